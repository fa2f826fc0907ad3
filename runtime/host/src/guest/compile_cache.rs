//! The compile cache's files (`DATA/compiled/HEX-ENGINE.cwasm`, see `Engine`): removed
//! with the blobs they were compiled from when no release references those any more.

use std::collections::HashSet;
use std::path::Path;
use std::time::SystemTime;
use wdeploy_core::Digest;

/// Removes the compiled files in `dir` whose component is not in `keep` and that were
/// written no later than `cutoff`; returns how many. Files of other names are left alone.
pub fn sweep(dir: &Path, keep: &HashSet<Digest>, cutoff: SystemTime) -> std::io::Result<usize> {
    let mut removed = 0;
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(digest) = name
            .strip_suffix(".cwasm")
            .and_then(|stem| stem.split_once('-'))
            .and_then(|(hex, _)| format!("sha256:{hex}").parse::<Digest>().ok())
        else {
            continue;
        };
        if keep.contains(&digest) || entry.metadata()?.modified()? > cutoff {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_old_files_of_unkept_components_go() {
        let dir = tempfile::tempdir().unwrap();
        let (kept, gone) = (Digest::of_bytes(b"kept"), Digest::of_bytes(b"gone"));
        let file =
            |d: &Digest, engine: &str| dir.path().join(format!("{}-{engine}.cwasm", d.hex()));
        for path in [file(&kept, "aa"), file(&gone, "aa"), file(&gone, "bb")] {
            std::fs::write(path, b"compiled").unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), b"not ours").unwrap();
        let keep = HashSet::from([kept.clone()]);
        // Nothing is old enough yet.
        let long_ago = SystemTime::UNIX_EPOCH;
        assert_eq!(sweep(dir.path(), &keep, long_ago).unwrap(), 0);
        assert_eq!(sweep(dir.path(), &keep, SystemTime::now()).unwrap(), 2);
        assert!(file(&kept, "aa").exists() && dir.path().join("notes.txt").exists());
        assert!(!file(&gone, "aa").exists() && !file(&gone, "bb").exists());
        assert_eq!(
            sweep(&dir.path().join("missing"), &keep, SystemTime::now()).unwrap(),
            0
        );
    }
}
