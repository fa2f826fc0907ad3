//! sha256 content addresses, written `sha256:<64 hex digits>` everywhere: slug ids, blob
//! names, build fingerprints, token hashes. All hashing of the platform happens here.

use sha2::{Digest as _, Sha256};
use std::io::Read;
use std::path::Path;

const PREFIX: &str = "sha256:";

/// A well-formed `sha256:` digest (lowercase hex). Parsing is the only way to make one
/// from text, so a `Digest` can always be used in a path: it names nothing but itself.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

/// Text that is not `sha256:` followed by 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a sha256 digest (sha256: and 64 lowercase hex digits)")]
pub struct DigestError(pub String);

impl Digest {
    /// The digest of some bytes.
    pub fn of_bytes(bytes: &[u8]) -> Digest {
        let mut hasher = Hasher::new();
        hasher.update(bytes);
        hasher.finish()
    }

    /// The digest of everything `reader` yields, read in 64 KiB chunks so a large
    /// component never sits in memory whole.
    pub fn of_reader(mut reader: impl Read) -> std::io::Result<Digest> {
        let mut hasher = Hasher::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                return Ok(hasher.finish());
            }
            hasher.update(&buf[..n]);
        }
    }

    /// The digest of a file's content.
    pub fn of_file(path: &Path) -> std::io::Result<Digest> {
        Digest::of_reader(std::fs::File::open(path)?)
    }

    /// The 64 hex digits, without `sha256:`: a blob's file name, a slug's folder name.
    pub fn hex(&self) -> &str {
        &self.0[PREFIX.len()..]
    }

    /// The first `n` hex digits (at most 64), for names and messages.
    pub fn hex_prefix(&self, n: usize) -> &str {
        &self.hex()[..n.min(64)]
    }

    /// Seven hex digits, as git abbreviates: `Deploy 204450c`.
    pub fn short(&self) -> &str {
        self.hex_prefix(7)
    }

    /// `sha256:` and twelve hex digits: `Slug sha256:204450c1e2f3`.
    pub fn abbreviated(&self) -> String {
        format!("{PREFIX}{}", self.hex_prefix(12))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn check(text: &str) -> Result<(), DigestError> {
        let valid = text.strip_prefix(PREFIX).is_some_and(|hex| {
            hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        });
        if valid {
            Ok(())
        } else {
            Err(DigestError(text.to_string()))
        }
    }
}

/// Incremental hashing, for content that is hashed while it is written elsewhere.
pub struct Hasher(Sha256);

impl Hasher {
    pub fn new() -> Hasher {
        Hasher(Sha256::new())
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finish(self) -> Digest {
        Digest(format!("{PREFIX}{}", hex::encode(self.0.finalize())))
    }
}

impl Default for Hasher {
    fn default() -> Self {
        Hasher::new()
    }
}

crate::text::validated_string!(Digest, DigestError);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digest_and_its_forms() {
        let d = Digest::of_bytes(b"abc");
        assert_eq!(
            d.as_str(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(d.short(), "ba7816b");
        assert_eq!(d.abbreviated(), "sha256:ba7816bf8f01");
        assert_eq!(d.hex().len(), 64);
        assert_eq!(d.as_str().parse::<Digest>().unwrap(), d);
        assert_eq!(Digest::of_reader(&b"abc"[..]).unwrap(), d);
    }

    #[test]
    fn only_well_formed_digests_parse() {
        for bad in [
            "sha256:../../etc",
            "sha256:",
            "md5:00",
            "sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad}");
        }
        let json = serde_json::to_string(&Digest::of_bytes(b"x")).unwrap();
        assert!(json.starts_with("\"sha256:"));
        assert!(serde_json::from_str::<Digest>("\"sha256:00\"").is_err());
    }
}
