//! The compact Merkle range a writer keeps instead of every leaf: the roots of the perfect
//! subtrees along the tree's right edge. It appends a leaf in amortised O(1) hashing, yields the
//! RFC 6962 root in O(log n), and round-trips through bytes so it can live in a database row.

use crate::{merkle, Hash, LedgerError};

/// First byte of the stored form, so a later layout can be told apart from this one.
const FORMAT_VERSION: u8 = 1;
/// Version byte plus the big-endian size.
const HEADER_LEN: usize = 1 + 8;

/// The right frontier of a Merkle tree.
///
/// For a tree of `size` leaves it holds one perfect subtree root per set bit of `size`, largest
/// (leftmost) first. Those are exactly the left operands of every split RFC 6962 makes down the
/// right edge, so folding them from the right gives the tree head.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    nodes: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many leaves have been pushed.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends one leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        // Like incrementing a binary counter: each trailing one bit of the old size is a
        // subtree of the same height as the carry, so the two merge and carry on upwards.
        let merges = self.size.trailing_ones() as usize;
        let keep = self.nodes.len() - merges;
        let mut carry = leaf;
        for left in self.nodes.drain(keep..).rev() {
            carry = merkle::node_hash(&left, &carry);
        }
        self.nodes.push(carry);
        self.size += 1;
    }

    /// The RFC 6962 Merkle Tree Hash of every leaf pushed so far.
    pub fn root(&self) -> Hash {
        let mut subtrees = self.nodes.iter().rev();
        let Some(&smallest) = subtrees.next() else {
            return merkle::empty_root();
        };
        subtrees.fold(smallest, |acc, left| merkle::node_hash(left, &acc))
    }

    /// The stored form: a version byte, the size as 8 big-endian bytes, then the subtree roots.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + 32 * self.nodes.len());
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&self.size.to_be_bytes());
        for node in &self.nodes {
            out.extend_from_slice(node);
        }
        out
    }

    /// Restores a frontier from [`Frontier::to_bytes`] output.
    pub fn from_bytes(b: &[u8]) -> Result<Self, LedgerError> {
        let bad = |why: String| Err(LedgerError::BadFrontier(why));
        let Some((&version, rest)) = b.split_first() else {
            return bad("no bytes".into());
        };
        if version != FORMAT_VERSION {
            return bad(format!("unknown version `{version}`"));
        }
        let Some((size, nodes)) = rest.split_first_chunk::<8>() else {
            return bad(format!("`{}` bytes is too short for a header", b.len()));
        };
        let size = u64::from_be_bytes(*size);
        // The node count is fixed by the size, so a wrong length means corruption, and
        // accepting it would break the invariant `push` relies on.
        let want = size.count_ones() as usize;
        if nodes.len() != want * 32 {
            return bad(format!(
                "size `{size}` needs `{want}` subtree roots but `{}` bytes follow the header",
                nodes.len()
            ));
        }
        let nodes = nodes
            .chunks_exact(32)
            .map(|c| <Hash>::try_from(c).expect("chunks_exact yields 32 bytes"))
            .collect();
        Ok(Self { size, nodes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(i: u64) -> Hash {
        merkle::leaf_hash(&i.to_le_bytes())
    }

    #[test]
    fn holds_one_node_per_set_bit() {
        let mut f = Frontier::new();
        for i in 0..100u64 {
            f.push(leaf(i));
            assert_eq!(f.nodes.len(), f.size.count_ones() as usize);
        }
    }

    #[test]
    fn root_matches_recursive_definition_for_every_size_to_300() {
        let leaves: Vec<Hash> = (0..300).map(leaf).collect();
        let mut f = Frontier::new();
        assert_eq!(f.root(), merkle::root(&[]));
        for (i, &l) in leaves.iter().enumerate() {
            f.push(l);
            assert_eq!(f.root(), merkle::root(&leaves[..=i]), "size {}", i + 1);
        }
    }

    #[test]
    fn bytes_round_trip_and_resume() {
        let mut f = Frontier::new();
        for i in 0..37 {
            let back = Frontier::from_bytes(&f.to_bytes()).expect("a frontier reads back");
            assert_eq!(back, f);
            f.push(leaf(i));
        }
        let mut resumed = Frontier::from_bytes(&f.to_bytes()).expect("a frontier reads back");
        resumed.push(leaf(37));
        f.push(leaf(37));
        assert_eq!(resumed.root(), f.root());
        assert_eq!(f.to_bytes().len(), 9 + 32 * 38u64.count_ones() as usize);
    }

    #[test]
    fn from_bytes_rejects_corruption() {
        let mut f = Frontier::new();
        for i in 0..5 {
            f.push(leaf(i));
        }
        let good = f.to_bytes();
        assert!(Frontier::from_bytes(&[]).is_err());
        assert!(Frontier::from_bytes(&good[..5]).is_err());
        assert!(Frontier::from_bytes(&good[..good.len() - 1]).is_err());
        let mut longer = good.clone();
        longer.extend_from_slice(&[0; 32]);
        assert!(Frontier::from_bytes(&longer).is_err());
        let mut version = good.clone();
        version[0] = 2;
        assert!(Frontier::from_bytes(&version).is_err());
        // Size 6 has two set bits where size 5 has two as well; size 7 has three.
        let mut size = good;
        size[8] = 7;
        let err = Frontier::from_bytes(&size).unwrap_err();
        assert!(err.to_string().contains("`7`"), "{err}");
    }
}
