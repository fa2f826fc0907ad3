//! Mirrors an app's source into its build directory.
//!
//! Buildpacks compile in a build directory of their own (as on Heroku), never in the
//! user's tree. The mirror keeps file modification times, and the build directory's
//! path is stable per app, so compilers that fingerprint by path and mtime (cargo)
//! rebuild only what changed.

use anyhow::Context;
use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

/// Names never copied into a build: VCS data, local build output and the app link file.
const SKIPPED: &[&str] = &[".git", "target", ".wdeploy", "node_modules", "__pycache__"];

/// Makes `dst` hold the same files as `src` (minus [`SKIPPED`]), copying only changed ones.
pub fn mirror(src: &Path, dst: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dst).with_context(|| format!("creating {}", dst.display()))?;
    let mut kept = HashSet::new();
    copy_dir(src, dst, &mut kept)?;
    prune(dst, &kept)
}

fn copy_dir(src: &Path, dst: &Path, kept: &mut HashSet<PathBuf>) -> anyhow::Result<()> {
    for entry in fs::read_dir(src).with_context(|| format!("reading {}", src.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        if SKIPPED.iter().any(|s| name == *s) {
            continue;
        }
        let from = entry.path();
        let to = dst.join(&name);
        let kind = entry.file_type()?;
        if kind.is_dir() {
            if to.is_file() {
                fs::remove_file(&to)?;
            }
            fs::create_dir_all(&to)?;
            kept.insert(to.clone());
            copy_dir(&from, &to, kept)?;
        } else if kind.is_file() {
            let meta = entry.metadata()?;
            let same = fs::metadata(&to).is_ok_and(|m| {
                m.is_file() && m.len() == meta.len() && m.modified().ok() == meta.modified().ok()
            });
            if !same {
                if to.is_dir() {
                    fs::remove_dir_all(&to)?;
                }
                fs::copy(&from, &to)
                    .with_context(|| format!("copying {} to the build", from.display()))?;
                let file = fs::File::options().write(true).open(&to)?;
                file.set_modified(meta.modified()?)?;
            }
            kept.insert(to);
        }
        // Symlinks and other special files stay out of the build.
    }
    Ok(())
}

/// The files a build of `src` sees (as [`mirror`] copies them), relative and sorted.
pub fn source_files(src: &Path) -> anyhow::Result<Vec<PathBuf>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
        for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let entry = entry?;
            if SKIPPED.iter().any(|s| entry.file_name() == *s) {
                continue;
            }
            let kind = entry.file_type()?;
            if kind.is_dir() {
                walk(root, &entry.path(), out)?;
            } else if kind.is_file() {
                out.push(entry.path().strip_prefix(root)?.to_path_buf());
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(src, src, &mut files)?;
    files.sort();
    Ok(files)
}

/// Removes everything under `dir` that the source no longer has.
fn prune(dir: &Path, kept: &HashSet<PathBuf>) -> anyhow::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if !kept.contains(&path) {
            if path.is_dir() {
                fs::remove_dir_all(&path)?;
            } else {
                fs::remove_file(&path)?;
            }
        } else if path.is_dir() {
            prune(&path, kept)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_and_prunes() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        fs::create_dir_all(src.path().join("src")).unwrap();
        fs::create_dir_all(src.path().join("target/debug")).unwrap();
        fs::write(src.path().join("src/main.rs"), "fn main() {}").unwrap();
        fs::write(src.path().join("target/debug/x"), "junk").unwrap();
        fs::write(dst.path().join("stale.wasm"), "old").unwrap();
        mirror(src.path(), dst.path()).unwrap();
        assert_eq!(
            fs::read_to_string(dst.path().join("src/main.rs")).unwrap(),
            "fn main() {}"
        );
        assert!(!dst.path().join("target").exists());
        assert!(!dst.path().join("stale.wasm").exists());
        let m1 = fs::metadata(src.path().join("src/main.rs"))
            .unwrap()
            .modified()
            .unwrap();
        let m2 = fs::metadata(dst.path().join("src/main.rs"))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(m1, m2);
    }
}
