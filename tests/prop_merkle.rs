//! Property suite: the RFC 9162 Merkle tree (`proof::merkle`) the checkpoints use.
//!
//! For 0 … 2,000 leaves: every audit path verifies against the root; the paths computed all at
//! once equal the ones computed one by one; a wrong index, a wrong leaf, a damaged or shortened
//! path, or another root fails.

#[path = "prop_support/mod.rs"]
mod prop_support;

use ario_mlflow_worker::proof::merkle::{
    audit_path, audit_paths, leaf_hash, root, verify_inclusion, TreeHash,
};
use prop_support::{cases, check};
use proptest::prelude::*;

fn leaves(seed: u64, n: usize) -> Vec<TreeHash> {
    let mut rng = fastrand::Rng::with_seed(seed);
    // Distinct leaves (the index leads): two equal sibling leaves would make one's path
    // verify at the other's index, which is right, but not what the wrong-index check tests.
    (0..n)
        .map(|i| {
            let len = rng.usize(0..64);
            let mut bytes = (i as u32).to_be_bytes().to_vec();
            bytes.extend((0..len).map(|_| rng.u8(..)));
            leaf_hash(&bytes)
        })
        .collect()
}

#[test]
fn every_audit_path_verifies_and_wrong_ones_fail() {
    check(
        "merkle inclusion, 0..=2000 leaves",
        cases(1),
        (
            any::<u64>(),
            prop_oneof![19 => 0usize..=64, 1 => 65usize..=2_000],
            proptest::collection::vec(any::<prop::sample::Index>(), 4),
        ),
        |(seed, n, picks)| {
            let l = leaves(seed, n);
            let r = root(&l);
            let all = audit_paths(&l);
            prop_assert_eq!(all.len(), n);
            prop_assert!(audit_path(&l, n).is_none(), "a path past the end");
            prop_assert!(!verify_inclusion(&r, n as u64, n as u64, &[], &r));
            for (i, path) in all.iter().enumerate() {
                prop_assert!(
                    verify_inclusion(&l[i], i as u64, n as u64, path, &r),
                    "leaf {} of {} does not verify",
                    i,
                    n
                );
            }
            if n == 0 {
                return Ok(());
            }
            for pick in picks {
                let i = pick.index(n);
                let single = audit_path(&l, i);
                prop_assert_eq!(single.as_ref(), Some(&all[i]), "leaf {}", i);
                let path = &all[i];
                // A wrong leaf.
                let mut wrong = l[i];
                wrong[0] ^= 1;
                prop_assert!(!verify_inclusion(&wrong, i as u64, n as u64, path, &r));
                // A wrong index (any other leaf's position).
                let j = (i + 1 + pick.index(n.max(2) - 1)) % n;
                if j != i {
                    prop_assert!(
                        !verify_inclusion(&l[i], j as u64, n as u64, path, &r),
                        "leaf {} verifies at index {} of {}",
                        i,
                        j,
                        n
                    );
                }
                // A damaged or shortened path, a wrong root. (A different tree size is not
                // checked: RFC 9162 paths do not commit to it, the signed checkpoint does.)
                if let Some(first) = path.first() {
                    let mut damaged = path.clone();
                    damaged[0] = {
                        let mut h = *first;
                        h[31] ^= 0x80;
                        h
                    };
                    prop_assert!(!verify_inclusion(&l[i], i as u64, n as u64, &damaged, &r));
                    prop_assert!(!verify_inclusion(&l[i], i as u64, n as u64, &path[1..], &r));
                }
                let mut other_root = r;
                other_root[0] ^= 1;
                prop_assert!(!verify_inclusion(
                    &l[i],
                    i as u64,
                    n as u64,
                    path,
                    &other_root
                ));
            }
            Ok(())
        },
    );
}
