//! The slug manifest: what a slug holds. Its canonical JSON hashes to the slug id.

use crate::digest::Digest;
use crate::procfile::{Procfile, ProcfileError};
use std::collections::BTreeMap;

/// One file of the slug, addressed by content.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SlugFile {
    pub digest: Digest,
    pub size: u64,
}

/// The components of a slug. Stored as a blob (its canonical JSON) under its own id.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SlugManifest {
    /// Component file name (`web.wasm`) → content.
    pub components: BTreeMap<String, SlugFile>,
}

impl SlugManifest {
    /// The canonical JSON: a `BTreeMap` keeps keys sorted, so equal manifests encode to
    /// equal bytes.
    pub fn to_json(&self) -> Vec<u8> {
        // A map of strings to plain structs always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The slug id: the digest of [`SlugManifest::to_json`].
    pub fn id(&self) -> Digest {
        Digest::of_bytes(&self.to_json())
    }

    /// Every process type of `procfile` must run a component this slug has.
    pub fn check(&self, procfile: &Procfile) -> Result<(), ProcfileError> {
        procfile.check_components(self.components.keys())
    }

    /// `web.wasm, worker.wasm`, for messages.
    pub fn names(&self) -> String {
        self.components
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_depends_on_content_and_checks_the_procfile() {
        let mut a = SlugManifest::default();
        a.components.insert(
            "web.wasm".into(),
            SlugFile {
                digest: Digest::of_bytes(b"1"),
                size: 1,
            },
        );
        let mut b = a.clone();
        assert_eq!(a.id(), b.id());
        b.components.get_mut("web.wasm").unwrap().digest = Digest::of_bytes(b"2");
        assert_ne!(a.id(), b.id());
        assert!(a.check(&Procfile::parse("web: web\n").unwrap()).is_ok());
        let err = a
            .check(&Procfile::parse("web: web\nworker: worker\n").unwrap())
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("`worker.wasm`, which the slug lacks"),
            "{err}"
        );
    }
}
