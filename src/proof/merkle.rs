//! RFC 9162 binary Merkle tree over SHA-256 (spec/mlflow-profile.md §8.1): the checkpoint
//! structure of the ario-proof family. Leaf hash = SHA-256(0x00 ‖ leaf bytes), node hash =
//! SHA-256(0x01 ‖ left ‖ right); no duplicate-last-leaf padding; the empty tree's root is
//! SHA-256(""). Recursion depth is log2(n), so the recursive definitions are used as written.

use super::hash::sha256;
use sha2::{Digest, Sha256};

/// A 32-byte SHA-256 tree hash.
pub type TreeHash = [u8; 32];

/// Hash of one leaf's bytes.
pub fn leaf_hash(leaf: &[u8]) -> TreeHash {
    Sha256::new()
        .chain_update([0u8])
        .chain_update(leaf)
        .finalize()
        .into()
}

/// Hash of an interior node.
pub fn node_hash(left: &TreeHash, right: &TreeHash) -> TreeHash {
    Sha256::new()
        .chain_update([1u8])
        .chain_update(left)
        .chain_update(right)
        .finalize()
        .into()
}

/// Root of a tree over already-hashed leaves.
pub fn root(leaves: &[TreeHash]) -> TreeHash {
    match leaves.len() {
        0 => sha256(b""),
        1 => leaves[0],
        n => {
            let k = split_point(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// Audit path (bottom-up sibling hashes) for the leaf at `index`; `None` when out of range.
pub fn audit_path(leaves: &[TreeHash], index: usize) -> Option<Vec<TreeHash>> {
    if index >= leaves.len() {
        return None;
    }
    let mut path = Vec::new();
    build_path(leaves, index, &mut path);
    Some(path)
}

fn build_path(leaves: &[TreeHash], index: usize, path: &mut Vec<TreeHash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split_point(n);
    if index < k {
        build_path(&leaves[..k], index, path);
        path.push(root(&leaves[k..]));
    } else {
        build_path(&leaves[k..], index - k, path);
        path.push(root(&leaves[..k]));
    }
}

/// Every leaf's audit path at once, in leaf order: the same paths as [`audit_path`] for each
/// index, in O(n log n) hashes instead of O(n²) (a checkpoint gives each of its predictions one).
pub fn audit_paths(leaves: &[TreeHash]) -> Vec<Vec<TreeHash>> {
    fn walk(leaves: &[TreeHash]) -> (TreeHash, Vec<Vec<TreeHash>>) {
        match leaves.len() {
            0 => (sha256(b""), Vec::new()),
            1 => (leaves[0], vec![Vec::new()]),
            n => {
                let k = split_point(n);
                let (left_root, mut left) = walk(&leaves[..k]);
                let (right_root, right) = walk(&leaves[k..]);
                for path in &mut left {
                    path.push(right_root);
                }
                left.extend(right.into_iter().map(|mut path| {
                    path.push(left_root);
                    path
                }));
                (node_hash(&left_root, &right_root), left)
            }
        }
    }
    walk(leaves).1
}

/// RFC 9162 §2.1.3.2 inclusion verification of `leaf` at `index` in a tree of `tree_size`.
pub fn verify_inclusion(
    leaf: &TreeHash,
    index: u64,
    tree_size: u64,
    path: &[TreeHash],
    expected_root: &TreeHash,
) -> bool {
    if tree_size == 0 || index >= tree_size {
        return false;
    }
    if tree_size == 1 {
        return path.is_empty() && leaf == expected_root;
    }
    let (mut fn_, mut sn) = (index, tree_size - 1);
    let mut r = *leaf;
    for p in path {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && r == *expected_root
}

/// Largest power of two strictly less than `n` (n ≥ 2).
fn split_point(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<TreeHash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    #[test]
    fn every_path_verifies_and_wrong_indices_or_roots_do_not() {
        for n in [1usize, 2, 3, 5, 7, 8, 9, 16, 33] {
            let l = leaves(n);
            let r = root(&l);
            for i in 0..n {
                let path = audit_path(&l, i).unwrap();
                assert!(
                    verify_inclusion(&l[i], i as u64, n as u64, &path, &r),
                    "n={n} i={i}"
                );
                if n > 1 {
                    let other = (i + 1) % n;
                    assert!(
                        !verify_inclusion(&l[i], other as u64, n as u64, &path, &r),
                        "n={n} i={i}"
                    );
                }
                assert!(!verify_inclusion(
                    &l[i],
                    i as u64,
                    n as u64,
                    &path,
                    &leaf_hash(b"x")
                ));
            }
            assert!(audit_path(&l, n).is_none());
            let all = audit_paths(&l);
            assert_eq!(all.len(), n);
            for (i, path) in all.iter().enumerate() {
                assert_eq!(Some(path), audit_path(&l, i).as_ref(), "n={n} i={i}");
            }
            assert!(!verify_inclusion(&l[0], n as u64, n as u64, &[], &r));
        }
    }

    #[test]
    fn empty_tree_root_is_the_hash_of_nothing_and_proves_nothing() {
        assert_eq!(
            hex::encode(root(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(!verify_inclusion(&[0; 32], 0, 0, &[], &root(&[])));
    }

    #[test]
    fn overlong_paths_are_rejected() {
        let l = leaves(4);
        let mut path = audit_path(&l, 1).unwrap();
        path.push([7; 32]);
        assert!(!verify_inclusion(&l[1], 1, 4, &path, &root(&l)));
    }
}
