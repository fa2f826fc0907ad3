//! Watches an app's source for edits, ignoring build output and VCS data.

use notify::{RecursiveMode, Watcher};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;

/// Directories whose changes never trigger a rebuild.
const IGNORED: &[&str] = &[".git", "target", "node_modules", "__pycache__", ".wdeploy"];

/// Quiet time after the last change before a rebuild starts (editors write in bursts).
const SETTLE: Duration = Duration::from_millis(300);

/// Starts watching `dir`; each message on the returned channel is one settled burst of
/// edits, named by a file of it that still exists: an editor (or `sed -i`) writes a
/// temporary file and renames it over the one edited, and the edited one is the news.
pub fn watch(dir: &Path) -> anyhow::Result<(notify::RecommendedWatcher, mpsc::Receiver<PathBuf>)> {
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<PathBuf>();
    let root = dir.to_path_buf();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.kind.is_access() {
            return;
        }
        for path in event.paths {
            if relevant(&root, &path) {
                let _ = raw_tx.send(path);
            }
        }
    })?;
    watcher.watch(dir, RecursiveMode::Recursive)?;

    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        while let Some(first) = raw_rx.recv().await {
            // Wait until edits stop arriving for SETTLE, then report the burst once.
            let mut burst = vec![first];
            loop {
                match tokio::time::timeout(SETTLE, raw_rx.recv()).await {
                    Ok(Some(path)) => burst.push(path),
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            if tx.send(named_by(burst)).await.is_err() {
                return;
            }
        }
    });
    Ok((watcher, rx))
}

/// The first path of a burst that still exists, else its first (a removal).
fn named_by(mut burst: Vec<PathBuf>) -> PathBuf {
    match burst.iter().position(|p| p.exists()) {
        Some(i) => burst.swap_remove(i),
        None => burst.swap_remove(0),
    }
}

fn relevant(root: &Path, path: &Path) -> bool {
    let Ok(rel) = path.strip_prefix(root) else {
        return false;
    };
    !rel.components().any(|c| match c {
        Component::Normal(name) => {
            IGNORED.iter().any(|i| name == *i)
                || name
                    .to_str()
                    .is_some_and(|n| n.ends_with('~') || n.starts_with(".#"))
        }
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignores_build_output() {
        let root = Path::new("/app");
        assert!(relevant(root, Path::new("/app/src/main.rs")));
        assert!(!relevant(root, Path::new("/app/target/debug/x")));
        assert!(!relevant(root, Path::new("/app/.git/index")));
        assert!(!relevant(root, Path::new("/elsewhere/x")));
    }

    #[test]
    fn a_burst_is_named_by_a_file_that_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let (gone, kept) = (dir.path().join("sedX1a2b3"), dir.path().join("web.js"));
        std::fs::write(&kept, "x").unwrap();
        let burst = vec![gone.clone(), gone.clone(), kept.clone()];
        assert_eq!(named_by(burst), kept);
        assert_eq!(named_by(vec![gone.clone()]), gone);
    }
}
