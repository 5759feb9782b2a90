//! The RFC 6962 Merkle tree over leaf hashes: leaf and node hashing with domain-separation
//! prefixes, the tree head of a list of leaves, and inclusion and consistency proofs with their
//! verification (the RFC 9162 §2.1.3.2 and §2.1.4.2 algorithms).
//!
//! Functions here take leaf hashes, not entry bytes: callers hash each entry once with
//! [`leaf_hash`] and keep that, which is also what the `prev` chain links.

use sha2::{Digest, Sha256};

use crate::{Hash, LedgerError};

/// Prefix of a leaf hash input, so a leaf can never be mistaken for an interior node.
const LEAF_PREFIX: u8 = 0x00;
/// Prefix of an interior node hash input.
const NODE_PREFIX: u8 = 0x01;

/// `SHA-256(0x00 || canonical)`: the hash of one leaf (RFC 6962 §2.1).
pub fn leaf_hash(canonical: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([LEAF_PREFIX]);
    h.update(canonical);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`: the hash of an interior node (RFC 6962 §2.1).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    // One contiguous update lets sha2 compress whole blocks instead of buffering three pieces.
    let mut input = [0u8; 65];
    input[0] = NODE_PREFIX;
    input[1..33].copy_from_slice(left);
    input[33..].copy_from_slice(right);
    Sha256::digest(input).into()
}

/// The root of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two strictly less than `n`, for `n >= 2`: where RFC 6962 splits a tree.
fn split(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// The Merkle Tree Hash (RFC 6962 §2.1) over `leaves`, which are already leaf hashes.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The audit path for leaf `index` in the tree over `leaves` (RFC 6962 §2.1.1), deepest sibling
/// first.
pub fn inclusion_proof(leaves: &[Hash], index: u64) -> Result<Vec<Hash>, LedgerError> {
    let size = leaves.len() as u64;
    let at = usize::try_from(index)
        .ok()
        .filter(|&at| at < leaves.len())
        .ok_or(LedgerError::IndexOutOfRange { index, size })?;
    let mut out = Vec::with_capacity(64 - size.leading_zeros() as usize);
    path(at, leaves, &mut out);
    Ok(out)
}

/// RFC 6962 `PATH(m, D[n])`, appending to `out`.
fn path(m: usize, d: &[Hash], out: &mut Vec<Hash>) {
    if d.len() <= 1 {
        return;
    }
    let k = split(d.len());
    if m < k {
        path(m, &d[..k], out);
        out.push(root(&d[k..]));
    } else {
        path(m - k, &d[k..], out);
        out.push(root(&d[..k]));
    }
}

/// Checks that `leaf` (a leaf hash) sits at `index` in the tree of `size` leaves whose root is
/// `root`, following RFC 9162 §2.1.3.2.
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut node, mut last) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if last == 0 {
            // More proof than tree: trailing garbage must not be ignored.
            return false;
        }
        if node & 1 == 1 || node == last {
            r = node_hash(p, &r);
            // A right-edge node with no sibling at these levels is carried up unchanged.
            while node & 1 == 0 && node != 0 {
                node >>= 1;
                last >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        node >>= 1;
        last >>= 1;
    }
    last == 0 && r == *root
}

/// The proof that the first `old_size` of `leaves` is a prefix of the tree over all of `leaves`
/// (RFC 6962 §2.1.2). Empty when `old_size` is 0 or equals the new size, where nothing needs
/// proving.
pub fn consistency_proof(leaves: &[Hash], old_size: u64) -> Result<Vec<Hash>, LedgerError> {
    let new = leaves.len() as u64;
    if old_size > new {
        return Err(LedgerError::SizeOutOfRange { old: old_size, new });
    }
    let mut out = Vec::new();
    if old_size > 0 && old_size < new {
        // old_size < leaves.len(), so it fits in usize.
        subproof(old_size as usize, leaves, true, &mut out);
    }
    Ok(out)
}

/// RFC 6962 `SUBPROOF(m, D[n], b)`, appending to `out`.
fn subproof(m: usize, d: &[Hash], whole: bool, out: &mut Vec<Hash>) {
    let n = d.len();
    if m == n {
        if !whole {
            out.push(root(d));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(m, &d[..k], whole, out);
        out.push(root(&d[k..]));
    } else {
        subproof(m - k, &d[k..], false, out);
        out.push(root(&d[..k]));
    }
}

/// Checks that the tree of `old_size` leaves with `old_root` is a prefix of the tree of
/// `new_size` leaves with `new_root`, following RFC 9162 §2.1.4.2.
///
/// Equal sizes need an empty proof and equal roots. An old size of 0 needs an empty proof and
/// `old_root` equal to [`empty_root`], since this crate gives the empty tree that root.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old_size > new_size {
        return false;
    }
    if old_size == new_size {
        return proof.is_empty() && old_root == new_root;
    }
    if old_size == 0 {
        return proof.is_empty() && *old_root == empty_root();
    }
    let Some((first, rest)) = proof.split_first() else {
        return false;
    };
    // A power-of-two old tree is itself a node of the new tree, so its root is not sent and
    // the walk starts from it (step 1 of the RFC: prepend `old_root`).
    let (start, rest) = if old_size.is_power_of_two() {
        (old_root, proof)
    } else {
        (first, rest)
    };
    let (mut node, mut last) = (old_size - 1, new_size - 1);
    while node & 1 == 1 {
        node >>= 1;
        last >>= 1;
    }
    let (mut fr, mut sr) = (*start, *start);
    for c in rest {
        if last == 0 {
            return false;
        }
        if node & 1 == 1 || node == last {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while node & 1 == 0 && node != 0 {
                node >>= 1;
                last >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        node >>= 1;
        last >>= 1;
    }
    fr == *old_root && sr == *new_root && last == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(&(i as u64).to_be_bytes()))
            .collect()
    }

    #[test]
    fn split_is_largest_power_of_two_below() {
        let cases = [
            (2, 1),
            (3, 2),
            (4, 2),
            (5, 4),
            (8, 4),
            (9, 8),
            (1000, 512),
            (1025, 1024),
        ];
        for (n, k) in cases {
            assert_eq!(split(n), k, "n = {n}");
        }
    }

    #[test]
    fn small_trees_have_the_rfc_shape() {
        let d = leaves(7);
        assert_eq!(root(&d[..1]), d[0]);
        assert_eq!(root(&d[..2]), node_hash(&d[0], &d[1]));
        let ab = node_hash(&d[0], &d[1]);
        let cd = node_hash(&d[2], &d[3]);
        let ef = node_hash(&d[4], &d[5]);
        // Three leaves: the third is promoted, not duplicated.
        assert_eq!(root(&d[..3]), node_hash(&ab, &d[2]));
        // Seven leaves: ((ab cd) ((ef) g)).
        assert_eq!(
            root(&d),
            node_hash(&node_hash(&ab, &cd), &node_hash(&ef, &d[6]))
        );
    }

    #[test]
    fn hashes_are_domain_separated() {
        let a = leaf_hash(b"a");
        let b = leaf_hash(b"b");
        let mut concat = Vec::from(a);
        concat.extend_from_slice(&b);
        // A leaf whose content is two hashes must not collide with their parent node.
        assert_ne!(leaf_hash(&concat), node_hash(&a, &b));
    }

    #[test]
    fn proofs_reject_out_of_range() {
        let d = leaves(4);
        assert_eq!(
            inclusion_proof(&d, 4),
            Err(LedgerError::IndexOutOfRange { index: 4, size: 4 })
        );
        assert!(inclusion_proof(&[], 0).is_err());
        assert_eq!(
            consistency_proof(&d, 5),
            Err(LedgerError::SizeOutOfRange { old: 5, new: 4 })
        );
        assert_eq!(consistency_proof(&d, 4), Ok(vec![]));
        assert_eq!(consistency_proof(&d, 0), Ok(vec![]));
    }

    #[test]
    fn single_leaf_tree_needs_no_path() {
        let d = leaves(1);
        assert_eq!(inclusion_proof(&d, 0), Ok(vec![]));
        assert!(verify_inclusion(&d[0], 0, 1, &[], &d[0]));
        assert!(!verify_inclusion(&d[0], 0, 1, &[d[0]], &d[0]));
        assert!(!verify_inclusion(&d[0], 1, 1, &[], &d[0]));
    }

    #[test]
    fn consistency_edge_cases() {
        let e = empty_root();
        let d = leaves(3);
        let r = root(&d);
        assert!(verify_consistency(0, 0, &e, &e, &[]));
        assert!(verify_consistency(0, 3, &e, &r, &[]));
        assert!(!verify_consistency(0, 3, &d[0], &r, &[]));
        assert!(!verify_consistency(0, 3, &e, &r, &[e]));
        assert!(verify_consistency(3, 3, &r, &r, &[]));
        assert!(!verify_consistency(3, 3, &r, &e, &[]));
        assert!(!verify_consistency(3, 3, &r, &r, &[r]));
        assert!(!verify_consistency(3, 2, &r, &r, &[]));
        // A non-trivial pair with an empty proof.
        assert!(!verify_consistency(1, 3, &d[0], &r, &[]));
    }
}
