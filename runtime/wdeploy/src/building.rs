//! Building an app directory into a slug on this machine, for `dev` and `push`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use wdeploy_buildpack::{BuildDirs, BuildRequest, Buildpack, Slug};
use wdeploy_core::{AppName, Digest};

/// An app directory and where its builds are cached (stable per directory).
#[derive(Clone)]
pub struct AppBuild {
    pub dir: PathBuf,
    /// Stable per directory: `NAME-HASH` (names the build cache and `dev`'s data).
    pub key: String,
    dirs: BuildDirs,
    buildpacks: std::sync::Arc<Vec<Buildpack>>,
    /// `--buildpack` was given: `buildpacks` holds just that one.
    forced: bool,
}

impl AppBuild {
    /// `buildpack` is `--buildpack NAME|PATH`: a built-in by name or a buildpack folder.
    pub fn new(dir: &Path, buildpack: Option<&str>) -> anyhow::Result<AppBuild> {
        let cache = crate::paths::cache_root()?;
        let key = format!("{}-{}", dir_key(dir)?, short_hash(dir));
        let builtin = Buildpack::builtin(&cache.join("buildpacks"))?;
        let (buildpacks, forced) = match buildpack {
            Some(spec) => (vec![Buildpack::choose(&builtin, spec)?], true),
            None => (builtin, false),
        };
        Ok(AppBuild {
            dir: dir.to_path_buf(),
            dirs: BuildDirs::new(cache.join("apps").join(&key)),
            key,
            buildpacks: std::sync::Arc::new(buildpacks),
            forced,
        })
    }

    /// Detects, compiles and packs, handing each line of build output to `output`.
    /// Blocking: call from a blocking thread.
    pub fn build(
        &self,
        env: &BTreeMap<String, String>,
        output: &mut dyn FnMut(&str),
    ) -> anyhow::Result<Slug> {
        wdeploy_buildpack::build(
            &BuildRequest {
                app_dir: &self.dir,
                dirs: &self.dirs,
                buildpacks: &self.buildpacks,
                forced: self.forced,
                env,
            },
            output,
        )
    }
}

/// An app name from a directory name: `My_App` → `my-app`, `2048` → `app-2048`.
pub fn dir_key(dir: &Path) -> anyhow::Result<AppName> {
    let base = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let mut name: String = base
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    name = name.trim_matches('-').chars().take(30).collect();
    if name.len() < 2 || !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        name = format!("app-{name}").chars().take(30).collect();
    }
    Ok(name.trim_end_matches('-').parse()?)
}

fn short_hash(path: &Path) -> String {
    Digest::of_bytes(path.to_string_lossy().as_bytes())
        .hex_prefix(12)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_dirs() {
        assert_eq!(dir_key(Path::new("/x/hello")).unwrap().as_str(), "hello");
        assert_eq!(dir_key(Path::new("/x/My_App")).unwrap().as_str(), "my-app");
        assert_eq!(dir_key(Path::new("/x/2048")).unwrap().as_str(), "app-2048");
        assert_eq!(dir_key(Path::new("/x/a")).unwrap().as_str(), "app-a");
        assert_eq!(dir_key(Path::new("/")).unwrap().as_str(), "app");
    }
}
