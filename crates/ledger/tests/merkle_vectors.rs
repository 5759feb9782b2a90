//! Known-answer tests from the certificate-transparency reference test data (the eight leaves
//! `""`, `00`, `10`, `2021`, `3031`, `40414243`, `5051525354555657`,
//! `606162636465666768696a6b6c6d6e6f`), which were computed by implementations independent of
//! this one.

use ledger::{
    consistency_proof, empty_root, inclusion_proof, leaf_hash, root, verify_consistency,
    verify_inclusion, Frontier, Hash,
};

const LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

/// Tree heads for the first 1..=8 leaves.
const ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn h(s: &str) -> Hash {
    ledger::parse_hash(s).unwrap()
}

fn leaves() -> Vec<Hash> {
    LEAVES
        .iter()
        .map(|l| leaf_hash(&hex::decode(l).unwrap()))
        .collect()
}

#[test]
fn empty_tree_is_sha256_of_nothing() {
    let want = h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_eq!(empty_root(), want);
    assert_eq!(root(&[]), want);
    assert_eq!(Frontier::new().root(), want);
}

#[test]
fn roots_match_reference() {
    let d = leaves();
    let mut f = Frontier::new();
    for (n, want) in ROOTS.iter().enumerate() {
        assert_eq!(root(&d[..=n]), h(want), "size {}", n + 1);
        f.push(d[n]);
        assert_eq!(f.root(), h(want), "frontier size {}", n + 1);
    }
}

#[test]
fn inclusion_proofs_match_reference() {
    // (0-based leaf index, tree size, audit path)
    let cases: [(u64, usize, &[&str]); 4] = [
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    let d = leaves();
    for (index, size, path) in cases {
        let want: Vec<Hash> = path.iter().map(|p| h(p)).collect();
        let got = inclusion_proof(&d[..size], index).unwrap();
        assert_eq!(got, want, "leaf {index} of {size}");
        let r = h(ROOTS[size - 1]);
        assert!(verify_inclusion(
            &d[index as usize],
            index,
            size as u64,
            &want,
            &r
        ));
        // The same path must not prove a neighbour, a different size, or a different root.
        let other = (index + 1) % size as u64;
        assert!(!verify_inclusion(
            &d[index as usize],
            other,
            size as u64,
            &want,
            &r
        ));
        assert!(!verify_inclusion(
            &d[index as usize],
            index,
            size as u64 * 2,
            &want,
            &r
        ));
        assert!(!verify_inclusion(
            &d[index as usize],
            index,
            size as u64,
            &want,
            &empty_root()
        ));
        let mut longer = want.clone();
        longer.push(r);
        assert!(!verify_inclusion(
            &d[index as usize],
            index,
            size as u64,
            &longer,
            &r
        ));
    }
}

#[test]
fn consistency_proofs_match_reference() {
    // (old size, new size, proof)
    let cases: [(u64, usize, &[&str]); 3] = [
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    let d = leaves();
    for (old, new, proof) in cases {
        let want: Vec<Hash> = proof.iter().map(|p| h(p)).collect();
        assert_eq!(
            consistency_proof(&d[..new], old).unwrap(),
            want,
            "{old} -> {new}"
        );
        let (r1, r2) = (h(ROOTS[old as usize - 1]), h(ROOTS[new - 1]));
        assert!(verify_consistency(old, new as u64, &r1, &r2, &want));
        assert!(!verify_consistency(old, new as u64, &r2, &r1, &want));
        assert!(!verify_consistency(old + 1, new as u64, &r1, &r2, &want));
        assert!(!verify_consistency(old, new as u64 * 2, &r1, &r2, &want));
        assert!(!verify_consistency(
            old,
            new as u64,
            &r1,
            &r2,
            &want[..want.len() - 1]
        ));
        let mut longer = want.clone();
        longer.push(r1);
        assert!(!verify_consistency(old, new as u64, &r1, &r2, &longer));
    }
}
