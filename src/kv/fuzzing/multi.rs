//! The multi-key writes in the model check: `RENAME`, `RENAMENX`, `COPY`
//! (with and without `REPLACE`) and `MSETNX` on both stores, against the
//! model's values and deadlines.

use super::{Input, Model, KEYS, VALUES};
use crate::kv::{KvError, KvStore, Reply};
use bytes::Bytes;

/// One multi-key write (`which % 5`: `RENAME`, `RENAMENX`, `COPY`,
/// `COPY ... REPLACE`, `MSETNX` of two pairs) of the step's key and a
/// second key drawn from the input.
pub(super) fn step(
    exec: &KvStore,
    typed: &KvStore,
    model: &mut Model,
    input: &mut Input<'_>,
    k: &str,
    which: u8,
) -> (Reply, Reply) {
    let k2 = input.pick(&KEYS);
    match which % 5 {
        0 => {
            let want = typed.rename(k, k2);
            let expected = match model.live(k).cloned() {
                None => Err(KvError::NoSuchKey),
                Some(entry) => {
                    model.entries.remove(k);
                    model.entries.insert(k2.to_owned(), entry);
                    Ok(())
                }
            };
            assert_eq!(want, expected, "RENAME {k} {k2} vs model");
            (
                exec.execute(&["RENAME", k, k2]),
                want.map_or_else(Reply::from, |()| Reply::ok()),
            )
        }
        1 => {
            let want = typed.rename_nx(k, k2);
            let expected = match model.live(k).cloned() {
                None => Err(KvError::NoSuchKey),
                Some(_) if k == k2 || model.live(k2).is_some() => Ok(false),
                Some(entry) => {
                    model.entries.remove(k);
                    model.entries.insert(k2.to_owned(), entry);
                    Ok(true)
                }
            };
            assert_eq!(want, expected, "RENAMENX {k} {k2} vs model");
            (
                exec.execute(&["RENAMENX", k, k2]),
                want.map_or_else(Reply::from, Reply::from),
            )
        }
        2 | 3 => {
            let replace = which % 5 == 3;
            let want = typed.copy(k, k2, replace);
            let expected = if k == k2 {
                Err(KvError::SameObject)
            } else {
                match model.live(k).cloned() {
                    None => Ok(false),
                    Some(_) if !replace && model.live(k2).is_some() => Ok(false),
                    Some(entry) => {
                        model.entries.insert(k2.to_owned(), entry);
                        Ok(true)
                    }
                }
            };
            assert_eq!(want, expected, "COPY {k} {k2} replace={replace} vs model");
            let mut args = vec!["COPY", k, k2];
            if replace {
                args.push("REPLACE");
            }
            (
                exec.execute(&args),
                want.map_or_else(Reply::from, Reply::from),
            )
        }
        _ => {
            let (v, v2) = (input.pick(&VALUES), input.pick(&VALUES));
            let want = typed.mset_nx(&[(k, v), (k2, v2)]);
            let taken = model.live(k).is_some() || model.live(k2).is_some();
            if !taken {
                // A key given twice takes its last value.
                model.entries.insert(k.to_owned(), (Bytes::from(v), None));
                model.entries.insert(k2.to_owned(), (Bytes::from(v2), None));
            }
            assert_eq!(want, Ok(!taken), "MSETNX {k} {v} {k2} {v2} vs model");
            (
                exec.execute(&["MSETNX", k, v, k2, v2]),
                want.map_or_else(Reply::from, Reply::from),
            )
        }
    }
}
