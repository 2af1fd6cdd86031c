//! Session ids: 128 random bits from the OS, as URL-safe base64.
//!
//! Owns the id type and its encoding; calls only the OS random source.

use super::SessionError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A session id: 128 bits from the OS random number generator, as 22
/// characters of URL-safe base64 without padding.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SessionId(pub(super) String);

impl SessionId {
    /// A fresh random id.
    ///
    /// # Errors
    ///
    /// [`SessionError::Random`] if the OS random number generator fails.
    pub fn random() -> Result<Self, SessionError> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| SessionError::Random(e.to_string()))?;
        Ok(Self(base64_url(&bytes)))
    }

    /// Whether `id` could be one that [`random`](Self::random) made: 22
    /// characters of URL-safe base64, the last of which carries the 128th
    /// bit's two bits and four zero bits (one of `A`, `Q`, `g`, `w`).
    pub(super) fn is_well_formed(id: &str) -> bool {
        let bytes = id.as_bytes();
        bytes.len() == 22
            && bytes
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
            && matches!(bytes[21], b'A' | b'Q' | b'g' | b'w')
    }

    /// The id as text (what goes in a cookie).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for SessionId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SessionId {
    /// Shows only a prefix: ids are secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = self.0.get(..4).unwrap_or("");
        write!(f, "SessionId({shown}…)")
    }
}

/// URL-safe base64 (RFC 4648 §5) without padding.
fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let sextet = (n >> (18 - 6 * i)) & 0x3F;
            out.push(char::from(ALPHABET[sextet as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_url_matches_rfc4648_vectors() {
        // RFC 4648 §10, URL-safe alphabet, no padding.
        for (input, expected) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_url(input.as_bytes()), expected);
        }
        assert_eq!(base64_url(&[0xFB, 0xFF]), "-_8");
    }

    #[test]
    fn ids_are_22_url_safe_chars_and_distinct() -> Result<(), SessionError> {
        let a = SessionId::random()?;
        let b = SessionId::random()?;
        assert_eq!(a.as_str().len(), 22);
        assert!(a
            .as_str()
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_ne!(a, b);
        Ok(())
    }

    #[test]
    fn random_ids_are_well_formed_and_others_are_not() -> Result<(), SessionError> {
        for _ in 0..1000 {
            let id = SessionId::random()?;
            assert!(SessionId::is_well_formed(id.as_str()), "{}", id.as_str());
        }
        assert!(SessionId::is_well_formed(&base64_url(&[0xFF; 16])));
        assert!(SessionId::is_well_formed(&base64_url(&[0; 16])));
        for bad in [
            "",
            "AAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAB",
            "AAAAAAAAAAAAAAAAAAAA+A",
            "AAAAAAAAAAAAAAAAAAAA=A",
            "AAAAAAAAAAAAAAAAAAAAé",
        ] {
            assert!(!SessionId::is_well_formed(bad), "{bad}");
        }
        Ok(())
    }
}
