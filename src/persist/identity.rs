//! What a log's header identifies: the data the log holds, as a 64-bit
//! fingerprint.
//!
//! By default the fingerprint is taken from the key and value types' names
//! (`std::any::type_name`): renaming or moving a type, or a compiler that
//! prints type names differently, changes it. A declared log schema
//! ([`CacheBuilder::log_schema`](crate::CacheBuilder::log_schema)) names the
//! data instead, and its fingerprint comes from that name alone. A cache
//! opened under a schema also accepts the header its log had before
//! (its types' fingerprint) and replaces it with the schema's.

/// A fingerprint of the key and value types, by name, so a log written for
/// other types is refused instead of misread.
pub(crate) fn fingerprint<K, V>() -> u64 {
    type_path_fingerprint(std::any::type_name::<K>(), std::any::type_name::<V>())
}

/// The fingerprint of types printed as `key` and `value`: what
/// [`fingerprint`] computes from them (for type names pinned as a release
/// printed them).
pub(crate) fn type_path_fingerprint(key: &str, value: &str) -> u64 {
    hash(format!("{key}\u{0}{value}").as_bytes())
}

/// The fingerprint of the declared schema `name`. Type names never hold
/// the `\u{1}` it starts with, so it is never a types' fingerprint of the
/// same bytes.
pub(crate) fn schema_fingerprint(name: &str) -> u64 {
    hash(format!("\u{1}shardcache log schema\u{0}{name}").as_bytes())
}

/// Two CRC-32Cs of `bytes`, with different seeds.
fn hash(bytes: &[u8]) -> u64 {
    let lo = crc32c::crc32c(bytes);
    let hi = crc32c::crc32c_append(0x5348_5244, bytes);
    (u64::from(hi) << 32) | u64::from(lo)
}

/// The header fingerprint a persistent cache writes, and the ones it also
/// opens and migrates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogIdentity {
    /// What a log's header must carry (and what rewrites write).
    pub(crate) fingerprint: u64,
    /// Headers also accepted, and replaced by `fingerprint` on open.
    pub(crate) previous: Vec<u64>,
}

impl LogIdentity {
    /// The identity of a log of `K → V` under `schema` (a declared name
    /// and the fingerprints it migrates from besides its types'), or by
    /// the types' names without one.
    pub(crate) fn of<K, V>(schema: Option<&LogSchema>) -> Self {
        let types = fingerprint::<K, V>();
        match schema {
            None => Self {
                fingerprint: types,
                previous: Vec::new(),
            },
            Some(s) => {
                let fingerprint = schema_fingerprint(&s.name);
                let mut previous = vec![types];
                for &p in &s.previous {
                    if !previous.contains(&p) {
                        previous.push(p);
                    }
                }
                previous.retain(|&p| p != fingerprint);
                Self {
                    fingerprint,
                    previous,
                }
            }
        }
    }

    /// Every fingerprint accepted: the current one first.
    pub(crate) fn accepted(&self) -> Vec<u64> {
        let mut all = vec![self.fingerprint];
        all.extend_from_slice(&self.previous);
        all
    }
}

/// A declared schema, as the builder keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogSchema {
    /// The declared name.
    pub(crate) name: String,
    /// Fingerprints besides the types' that logs of this data were written
    /// under (the type names an earlier release printed).
    pub(crate) previous: Vec<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_tell_types_apart() {
        assert_eq!(fingerprint::<String, u64>(), fingerprint::<String, u64>());
        assert_ne!(fingerprint::<String, u64>(), fingerprint::<String, u32>());
        assert_eq!(
            fingerprint::<String, u64>(),
            type_path_fingerprint("alloc::string::String", "u64")
        );
    }

    /// The values logs already carry: a change here strands every log.
    #[test]
    fn fingerprints_are_stable() {
        assert_eq!(
            type_path_fingerprint("alloc::string::String", "bytes::bytes::Bytes"),
            0x43cb_a81e_cad8_9582
        );
        assert_eq!(schema_fingerprint("sessions/v1"), 0xc4cc_1730_cf2f_e8bf);
    }

    #[test]
    fn a_schema_is_told_apart_from_types_and_other_names() {
        assert_ne!(schema_fingerprint("a"), schema_fingerprint("b"));
        assert_ne!(
            schema_fingerprint("alloc::string::String\u{0}u64"),
            fingerprint::<String, u64>()
        );
        let schema = LogSchema {
            name: "users/v1".into(),
            previous: vec![7, fingerprint::<String, u64>()],
        };
        let id = LogIdentity::of::<String, u64>(Some(&schema));
        assert_eq!(id.fingerprint, schema_fingerprint("users/v1"));
        assert_eq!(id.previous, vec![fingerprint::<String, u64>(), 7]);
        let plain = LogIdentity::of::<String, u64>(None);
        assert_eq!(plain.accepted(), vec![fingerprint::<String, u64>()]);
    }
}
