//! Property tests: every inclusion and consistency proof the crate builds verifies, and flipping
//! any single bit of a proof element, the leaf or a root makes it fail.

use ledger::{
    consistency_proof, inclusion_proof, leaf_hash, root, verify_consistency, verify_inclusion,
    Frontier, Hash,
};
use proptest::prelude::*;

fn leaves(n: usize, salt: u64) -> Vec<Hash> {
    (0..n as u64)
        .map(|i| leaf_hash(&[salt.to_le_bytes(), i.to_le_bytes()].concat()))
        .collect()
}

fn flip(h: &Hash, bit: usize) -> Hash {
    let mut out = *h;
    out[bit / 8] ^= 1 << (bit % 8);
    out
}

/// A tree size and a position inside it.
fn size_and_index() -> impl Strategy<Value = (usize, u64)> {
    (1usize..=300).prop_flat_map(|n| (Just(n), 0..n as u64))
}

/// A new tree size and an old size up to it.
fn old_and_new() -> impl Strategy<Value = (u64, usize)> {
    (1usize..=300).prop_flat_map(|n| (0..=n as u64, Just(n)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn inclusion_proofs_verify((n, index) in size_and_index(), salt: u64, pick: usize, bit in 0usize..256) {
        let d = leaves(n, salt);
        let r = root(&d);
        let leaf = d[index as usize];
        let proof = inclusion_proof(&d, index).unwrap();
        prop_assert!(verify_inclusion(&leaf, index, n as u64, &proof, &r));

        prop_assert!(!verify_inclusion(&flip(&leaf, bit), index, n as u64, &proof, &r));
        prop_assert!(!verify_inclusion(&leaf, index, n as u64, &proof, &flip(&r, bit)));
        if !proof.is_empty() {
            let mut bad = proof.clone();
            let at = pick % bad.len();
            bad[at] = flip(&bad[at], bit);
            prop_assert!(!verify_inclusion(&leaf, index, n as u64, &bad, &r));
            prop_assert!(!verify_inclusion(&leaf, index, n as u64, &proof[1..], &r));
        }
        if n > 1 {
            let other = (index + 1 + pick as u64 % (n as u64 - 1)) % n as u64;
            prop_assert!(!verify_inclusion(&leaf, other, n as u64, &proof, &r));
        }
    }

    #[test]
    fn consistency_proofs_verify((old, n) in old_and_new(), salt: u64, pick: usize, bit in 0usize..256) {
        let d = leaves(n, salt);
        let (r1, r2) = (root(&d[..old as usize]), root(&d));
        let proof = consistency_proof(&d, old).unwrap();
        prop_assert!(verify_consistency(old, n as u64, &r1, &r2, &proof));

        prop_assert!(!verify_consistency(old, n as u64, &flip(&r1, bit), &r2, &proof));
        // From the empty tree any new root is consistent, so only flip it for a real prefix.
        if old > 0 {
            prop_assert!(!verify_consistency(old, n as u64, &r1, &flip(&r2, bit), &proof));
        }
        if !proof.is_empty() {
            let mut bad = proof.clone();
            let at = pick % bad.len();
            bad[at] = flip(&bad[at], bit);
            prop_assert!(!verify_consistency(old, n as u64, &r1, &r2, &bad));
            prop_assert!(!verify_consistency(old, n as u64, &r1, &r2, &proof[..proof.len() - 1]));
        }
    }

    #[test]
    fn frontier_matches_root_and_survives_storage(n in 0usize..600, cut in 0usize..600, salt: u64) {
        let d = leaves(n, salt);
        let cut = cut.min(n);
        let mut f = Frontier::new();
        for &l in &d[..cut] {
            f.push(l);
        }
        let mut f = Frontier::from_bytes(&f.to_bytes()).unwrap();
        for &l in &d[cut..] {
            f.push(l);
        }
        prop_assert_eq!(f.size(), n as u64);
        prop_assert_eq!(f.root(), root(&d));
    }
}

#[test]
fn every_proof_for_every_size_to_64_verifies() {
    let d = leaves(64, 1);
    for n in 1..=d.len() {
        let r = root(&d[..n]);
        for i in 0..n as u64 {
            let p = inclusion_proof(&d[..n], i).unwrap();
            assert!(
                verify_inclusion(&d[i as usize], i, n as u64, &p, &r),
                "leaf {i} of {n}"
            );
        }
        for old in 0..=n as u64 {
            let p = consistency_proof(&d[..n], old).unwrap();
            let r1 = root(&d[..old as usize]);
            assert!(
                verify_consistency(old, n as u64, &r1, &r, &p),
                "{old} -> {n}"
            );
        }
    }
}
