//! A built slug on disk: the components a buildpack produced, with the Procfile and
//! settings that came with the source.

use anyhow::{Context, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use wdeploy_core::settings::{BUILDPACK_DEFAULTS_FILE, SETTINGS_FILE, with_defaults};
use wdeploy_core::wasm::{WasmKind, kind_of_file};
use wdeploy_core::{AppSettings, Digest, Procfile, SlugFile, SlugManifest};

/// A built slug on disk, with the Procfile and settings that came with the source.
#[derive(Debug, Clone)]
pub struct Slug {
    /// Directory holding the component files named in the manifest.
    pub dir: PathBuf,
    pub manifest: SlugManifest,
    pub procfile: Procfile,
    pub settings: AppSettings,
    /// The `wdeploy.toml` text (empty when the app has none), sent with a release.
    pub settings_text: String,
}

impl Slug {
    /// Collects the components a buildpack left at the top of `build_dir`, with the Procfile.
    ///
    /// Refuses anything that would fail later: a file that is not a component, no
    /// components at all, a bad Procfile, or a Procfile naming a component the slug lacks.
    pub fn pack(build_dir: &Path) -> anyhow::Result<Slug> {
        let mut components = BTreeMap::new();
        let entries = std::fs::read_dir(build_dir)
            .with_context(|| format!("reading build output {}", build_dir.display()))?;
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if !name.ends_with(".wasm") || !entry.file_type()?.is_file() {
                continue;
            }
            match kind_of_file(&path)? {
                WasmKind::Component => {}
                WasmKind::CoreModule => bail!(
                    "{name} is a core WebAssembly module, not a component: build for wasm32-wasip2 or wrap it with `wasm-tools component new`"
                ),
                WasmKind::NotWasm => bail!("{name} is not a WebAssembly component"),
            }
            let digest =
                Digest::of_file(&path).with_context(|| format!("hashing {}", path.display()))?;
            let size = entry.metadata()?.len();
            components.insert(name.to_string(), SlugFile { digest, size });
        }
        if components.is_empty() {
            bail!(
                "the build produced no components (*.wasm) in {}",
                build_dir.display()
            );
        }
        let manifest = SlugManifest { components };
        let procfile = load_procfile(build_dir, &manifest)?;
        let settings_text = with_defaults(
            &read_optional(&build_dir.join(BUILDPACK_DEFAULTS_FILE))?,
            &read_optional(&build_dir.join(SETTINGS_FILE))?,
        )?;
        let settings = AppSettings::parse(&settings_text)?;
        Ok(Slug {
            dir: build_dir.to_path_buf(),
            manifest,
            procfile,
            settings,
            settings_text,
        })
    }

    /// Copies the components into `dir` (one directory per slug id, written to a temporary
    /// sibling and renamed into place) and points the slug there. The build directory is
    /// rewritten by the next build; a persisted slug never changes, so it can be uploaded
    /// or loaded while another build of the same app runs.
    pub fn persist(mut self, root: &Path) -> anyhow::Result<Slug> {
        let target = root.join(self.id().hex());
        if !target.is_dir() {
            std::fs::create_dir_all(root)?;
            let tmp = tempfile::Builder::new().prefix(".slug-").tempdir_in(root)?;
            for name in self.manifest.components.keys() {
                std::fs::copy(self.dir.join(name), tmp.path().join(name))
                    .with_context(|| format!("saving {name}"))?;
            }
            let tmp = tmp.keep();
            if std::fs::rename(&tmp, &target).is_err() {
                // The same slug was saved by a concurrent build: identical content.
                let _ = std::fs::remove_dir_all(&tmp);
            }
        }
        self.dir = target;
        Ok(self)
    }

    pub fn id(&self) -> Digest {
        self.manifest.id()
    }

    /// Path of one component file of this slug.
    pub fn component_path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }
}

/// Reads the Procfile (or infers `web:` for a lone component) and checks it against the slug.
fn load_procfile(dir: &Path, manifest: &SlugManifest) -> anyhow::Result<Procfile> {
    let path = dir.join("Procfile");
    let procfile = match std::fs::read_to_string(&path) {
        Ok(text) => Procfile::parse(&text)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut names = manifest.components.keys();
            match (names.next(), names.next()) {
                (Some(only), None) => Procfile::single_web(only),
                _ => bail!(
                    "no Procfile and {} components ({}): add a Procfile naming which one runs `web`",
                    manifest.components.len(),
                    manifest.names()
                ),
            }
        }
        Err(e) => return Err(anyhow::Error::new(e).context("reading Procfile")),
    };
    manifest.check(&procfile)?;
    Ok(procfile)
}

/// A text file's contents, or empty when there is none.
fn read_optional(path: &Path) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(anyhow::Error::new(e).context(format!("reading {}", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    #[test]
    fn packs_components_and_checks_procfile() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("web.wasm"), COMPONENT).unwrap();
        let slug = Slug::pack(dir.path()).unwrap();
        assert_eq!(slug.procfile.get("web").unwrap().component, "web.wasm");
        assert_eq!(slug.id(), slug.manifest.id());

        std::fs::write(dir.path().join("Procfile"), "web: web\nworker: worker\n").unwrap();
        let err = Slug::pack(dir.path()).unwrap_err().to_string();
        assert!(err.contains("`worker.wasm`, which the slug lacks"), "{err}");

        std::fs::write(dir.path().join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
        let err = Slug::pack(dir.path()).unwrap_err().to_string();
        assert!(err.contains("core WebAssembly module"), "{err}");
    }
}
