//! Validation both backends share, so that they refuse and fail in the same way.

use std::collections::HashSet;

use crate::{Error, Op, RangeRequest, Result, Revision};

/// Most ops in one transaction: etcd's default `--max-txn-ops`, so that a transaction
/// that works on the embedded store also works on etcd.
pub(crate) const MAX_TXN_OPS: usize = 128;

/// Checks the shape of a transaction before it goes to the backend: at least one op, at
/// most [`MAX_TXN_OPS`], no empty key, and no key twice (etcd refuses two writes to one key
/// in a transaction, and the outcome of such a pair would be ambiguous anyway).
pub(crate) fn validate_txn(ops: &[Op]) -> Result<()> {
    if ops.is_empty() {
        return Err(Error::Invalid("empty transaction".into()));
    }
    if ops.len() > MAX_TXN_OPS {
        return Err(Error::Invalid(format!(
            "transaction of {} ops: at most {MAX_TXN_OPS} are allowed",
            ops.len()
        )));
    }
    let mut seen = HashSet::with_capacity(ops.len());
    for op in ops {
        let key = op.key();
        if key.is_empty() {
            return Err(Error::Invalid("empty key".into()));
        }
        if !seen.insert(key) {
            return Err(Error::Invalid(format!(
                "key {key:?} is written twice in one transaction"
            )));
        }
    }
    for op in ops {
        if let Op::Update { expected, .. } | Op::Delete { expected, .. } = op {
            if *expected < 0 {
                return Err(Error::Invalid(format!(
                    "negative expected revision {expected}"
                )));
            }
        }
    }
    Ok(())
}

/// Whether `op` may apply to a key whose mod_revision is `current` (`None`: absent).
pub(crate) fn check_op(op: &Op, current: Option<Revision>) -> Result<()> {
    match (op, current) {
        (Op::Create { key, .. }, Some(_)) => Err(Error::AlreadyExists(key.clone())),
        (Op::Create { .. }, None) => Ok(()),
        (Op::Update { key, .. } | Op::Delete { key, .. }, None) => {
            Err(Error::NotFound(key.clone()))
        }
        (Op::Update { key, expected, .. } | Op::Delete { key, expected }, Some(current)) => {
            if *expected != 0 && *expected != current {
                Err(Error::Conflict {
                    key: key.clone(),
                    expected: *expected,
                    current,
                })
            } else {
                Ok(())
            }
        }
    }
}

/// Checks a range request's shape.
pub(crate) fn validate_range(req: &RangeRequest) -> Result<()> {
    if req.revision < 0 {
        return Err(Error::Invalid(format!(
            "negative revision {}",
            req.revision
        )));
    }
    if let Some(after) = &req.start_after {
        if !after.starts_with(&req.prefix) {
            return Err(Error::Invalid(format!(
                "start_after {after:?} is not under prefix {:?}",
                req.prefix
            )));
        }
    }
    Ok(())
}

/// The first key after every key that starts with `prefix`, byte-wise (etcd's "prefix
/// end"); `None` when there is none (empty prefix, or only 0xFF bytes).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(key: &str) -> Op {
        Op::Create {
            key: key.into(),
            value: vec![],
        }
    }

    #[test]
    fn txn_shape() {
        assert!(matches!(validate_txn(&[]), Err(Error::Invalid(_))));
        assert!(matches!(
            validate_txn(&[create("")]),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            validate_txn(&[create("a"), create("a")]),
            Err(Error::Invalid(_))
        ));
        let many: Vec<Op> = (0..=MAX_TXN_OPS)
            .map(|i| create(&format!("k{i}")))
            .collect();
        assert!(matches!(validate_txn(&many), Err(Error::Invalid(_))));
        assert!(validate_txn(&many[..MAX_TXN_OPS]).is_ok());
    }

    #[test]
    fn op_checks() {
        let upd = |expected| Op::Update {
            key: "k".into(),
            value: vec![],
            expected,
        };
        assert!(matches!(
            check_op(&create("k"), Some(3)),
            Err(Error::AlreadyExists(_))
        ));
        assert!(check_op(&create("k"), None).is_ok());
        assert!(matches!(check_op(&upd(0), None), Err(Error::NotFound(_))));
        assert!(matches!(check_op(&upd(3), None), Err(Error::NotFound(_))));
        assert!(check_op(&upd(0), Some(3)).is_ok());
        assert!(check_op(&upd(3), Some(3)).is_ok());
        assert!(matches!(
            check_op(&upd(2), Some(3)),
            Err(Error::Conflict {
                expected: 2,
                current: 3,
                ..
            })
        ));
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"a/b"), Some(b"a/c".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b""), None);
        assert_eq!(prefix_end(b"\xff\xff"), None);
    }
}
