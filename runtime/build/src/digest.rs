//! sha256 content addresses, written `sha256:<hex>` everywhere.

use sha2::{Digest as _, Sha256};
use std::io::Read;
use std::path::Path;

/// The `sha256:…` address of some bytes.
pub fn of_bytes(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The `sha256:…` address of a file, read in chunks so large components do not sit in memory twice.
pub fn of_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

/// True for a well-formed `sha256:` followed by 64 lowercase hex digits.
pub fn is_valid(digest: &str) -> bool {
    digest
        .strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_digest() {
        let d = super::of_bytes(b"abc");
        assert_eq!(
            d,
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(super::is_valid(&d));
        assert!(!super::is_valid("sha256:../../etc"));
    }
}
