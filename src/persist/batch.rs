//! The writes of a [`Record::Batch`](super::Record::Batch): several keys
//! written as one step, logged as one record so that a frame's checksum
//! makes the whole batch replay or none of it (a torn batch is a torn tail).
//!
//! A part is an insert or a removal, never another batch: the record's
//! shape is flat, so decoding one never recurses.

use serde::{Deserialize, Serialize};

/// One write of a batch, as decoded.
#[derive(Debug, Deserialize)]
pub(crate) enum Part<K, V> {
    Insert {
        key: K,
        value: V,
        expires_at: Option<u64>,
    },
    Remove {
        key: K,
    },
}

/// One write of a batch, encoded from borrowed keys and values (the same
/// bytes as [`Part`]).
#[derive(Serialize)]
pub(crate) enum PartRef<'a, K, V> {
    Insert {
        key: &'a K,
        value: &'a V,
        expires_at: Option<u64>,
    },
    Remove {
        key: &'a K,
    },
}

impl<K, V> From<Part<K, V>> for super::Record<K, V> {
    fn from(part: Part<K, V>) -> Self {
        match part {
            Part::Insert {
                key,
                value,
                expires_at,
            } => Self::Insert {
                key,
                value,
                expires_at,
            },
            Part::Remove { key } => Self::Remove { key },
        }
    }
}

impl<K, V> super::Record<K, V> {
    /// The single-key records this record stands for, in order: a batch's
    /// parts, or the record itself.
    pub(crate) fn into_parts(self) -> Vec<Self> {
        match self {
            Self::Batch(parts) => parts.into_iter().map(Self::from).collect(),
            record => vec![record],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Record, RecordRef};
    use super::PartRef;

    #[test]
    fn a_batch_decodes_as_its_parts_in_order() {
        let (a, b, v) = ("a".to_string(), "b".to_string(), 7u32);
        let mut bytes = Vec::new();
        RecordRef::Batch(vec![
            PartRef::Insert {
                key: &a,
                value: &v,
                expires_at: Some(9),
            },
            PartRef::Remove { key: &b },
        ])
        .encode_into(&mut bytes)
        .expect("encode");
        let parts = Record::<String, u32>::decode(&bytes)
            .expect("decode")
            .into_parts();
        assert!(matches!(
            &parts[..],
            [
                Record::Insert { key, value: 7, expires_at: Some(9) },
                Record::Remove { key: removed },
            ] if key == "a" && removed == "b"
        ));
        // No cut of a batch decodes as a batch (with fewer parts).
        for cut in 0..bytes.len() {
            if let Ok(r) = Record::<String, u32>::decode(&bytes[..cut]) {
                assert!(!matches!(r, Record::Batch(_)), "cut {cut}");
            }
        }
    }
}
