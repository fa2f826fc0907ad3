//! The build cache: a build of unchanged source reuses the previous slug.
//!
//! Compiling is the slow part of a build (seconds for Rust, tens of seconds for Python
//! and JavaScript, whose components embed an interpreter). When the source files, the
//! buildpack and the config vars are all what they were at the last successful build,
//! its slug is the answer, so `push` and `dev` skip the buildpack entirely.

use crate::slug::Slug;
use crate::sync;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use wdeploy_core::{AppSettings, Digest, Procfile, SlugManifest};

/// The last successful build of an app, saved beside its build dirs.
#[derive(Serialize, Deserialize)]
struct Record {
    fingerprint: Digest,
    manifest: SlugManifest,
    procfile: Procfile,
    settings_text: String,
}

const RECORD_FILE: &str = "last-build.json";

/// The digest of everything a build depends on: every source file the build would see
/// (path and content), the buildpack's scripts (a built-in's folder name carries their
/// hash; a third-party folder may change in place) and the config vars.
pub fn fingerprint(
    app_dir: &Path,
    buildpack_dir: &Path,
    env: &BTreeMap<String, String>,
) -> anyhow::Result<Digest> {
    let mut text = String::new();
    for file in sync::source_files(app_dir)? {
        let digest = Digest::of_file(&app_dir.join(&file))
            .with_context(|| format!("reading {}", file.display()))?;
        text.push_str(&format!("src {} {digest}\n", file.display()));
    }
    text.push_str(&format!("buildpack {}\n", buildpack_dir.display()));
    for script in ["bin/detect", "bin/compile"] {
        let digest = Digest::of_file(&buildpack_dir.join(script))
            .with_context(|| format!("reading the buildpack's {script}"))?;
        text.push_str(&format!("{script} {digest}\n"));
    }
    // JSON keeps the values unambiguous (they may hold newlines).
    text.push_str(&serde_json::to_string(env)?);
    Ok(Digest::of_bytes(text.as_bytes()))
}

/// The slug of the last build when it had this fingerprint and its files are still there.
pub fn lookup(root: &Path, slugs: &Path, fingerprint: &Digest) -> Option<Slug> {
    let text = std::fs::read_to_string(root.join(RECORD_FILE)).ok()?;
    let record: Record = serde_json::from_str(&text).ok()?;
    if record.fingerprint != *fingerprint {
        return None;
    }
    let dir = slugs.join(record.manifest.id().hex());
    let complete = record
        .manifest
        .components
        .iter()
        .all(|(name, f)| std::fs::metadata(dir.join(name)).is_ok_and(|m| m.len() == f.size));
    if !complete {
        return None;
    }
    let settings = AppSettings::parse(&record.settings_text).ok()?;
    Some(Slug {
        dir,
        manifest: record.manifest,
        procfile: record.procfile,
        settings,
        settings_text: record.settings_text,
    })
}

/// Remembers a successful build.
pub fn save(root: &Path, fingerprint: &Digest, slug: &Slug) -> anyhow::Result<()> {
    let record = Record {
        fingerprint: fingerprint.clone(),
        manifest: slug.manifest.clone(),
        procfile: slug.procfile.clone(),
        settings_text: slug.settings_text.clone(),
    };
    let tmp = root.join(format!("{RECORD_FILE}.tmp"));
    std::fs::write(&tmp, serde_json::to_vec(&record)?)?;
    std::fs::rename(&tmp, root.join(RECORD_FILE))?;
    Ok(())
}
