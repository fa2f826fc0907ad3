//! Building an app directory into a slug on this machine, for `dev` and `push`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use wdeploy_build::{BuildDirs, BuildRequest, Buildpack, Slug};

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
        let key = format!("{}-{}", dir_key(dir), short_hash(dir));
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
        wdeploy_build::build(
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

/// An app name (`[a-z][a-z0-9-]*`) from a directory name.
pub fn dir_key(dir: &Path) -> String {
    let base = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let mut name: String = base
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    name = name.trim_matches('-').chars().take(30).collect();
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        name = format!("app-{name}").chars().take(30).collect();
    }
    name.trim_end_matches('-').to_string()
}

fn short_hash(path: &Path) -> String {
    let digest = wdeploy_build::digest::of_bytes(path.to_string_lossy().as_bytes());
    digest[7..19].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_dirs() {
        assert_eq!(dir_key(Path::new("/x/hello")), "hello");
        assert_eq!(dir_key(Path::new("/x/My_App")), "my-app");
        assert_eq!(dir_key(Path::new("/x/2048")), "app-2048");
    }
}
