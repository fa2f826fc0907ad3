//! Running buildpacks (Heroku buildpack API: `bin/detect DIR`, `bin/compile BUILD CACHE ENV`).

use crate::slug::Slug;
use crate::{cache, sync};
use anyhow::{Context, bail};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A buildpack on disk: a folder with `bin/detect` and `bin/compile`.
#[derive(Debug, Clone)]
pub struct Buildpack {
    pub name: String,
    pub dir: PathBuf,
    /// What `bin/detect` looks for, in words, for the "no buildpack detected" error.
    pub looks_for: String,
}

/// A buildpack shipped inside the `wdeploy` binary.
struct Builtin {
    name: &'static str,
    looks_for: &'static str,
    /// Files of the buildpack folder: relative path and text. Files under `bin/` are
    /// made executable. Everything a buildpack needs at build time (WIT files too) must
    /// be listed here, since an installed `wdeploy` has no checkout beside it.
    files: &'static [(&'static str, &'static str)],
    /// More files written beside `files`, such as [`PLATFORM_WIT`].
    extra: &'static [(&'static str, &'static str)],
}

/// Includes a file of `buildpacks/NAME/`, stored at its path inside the buildpack.
macro_rules! bp_file {
    ($bp:literal, $path:literal) => {
        (
            $path,
            include_str!(concat!("../../../buildpacks/", $bp, "/", $path)),
        )
    };
}

/// Includes a file of the repository's `wit/`, stored at the same path in a buildpack.
macro_rules! wit_file {
    ($path:literal) => {
        ($path, include_str!(concat!("../../../", $path)))
    };
}

/// The platform's WIT (`wit/`, worlds `web` and `worker` with their deps), for buildpacks
/// whose tools generate bindings from it: the app directory then needs no copy. Rust apps
/// keep a copy (`wdeploy new -t rust-counter` writes one).
pub const PLATFORM_WIT: &[(&str, &str)] = &[
    wit_file!("wit/world.wit"),
    wit_file!("wit/queue.wit"),
    wit_file!("wit/deps/cli.wit"),
    wit_file!("wit/deps/clocks.wit"),
    wit_file!("wit/deps/filesystem.wit"),
    wit_file!("wit/deps/http.wit"),
    wit_file!("wit/deps/io.wit"),
    wit_file!("wit/deps/random.wit"),
    wit_file!("wit/deps/sockets.wit"),
    wit_file!("wit/deps/config/store.wit"),
    wit_file!("wit/deps/config/world.wit"),
    wit_file!("wit/deps/keyvalue/atomic.wit"),
    wit_file!("wit/deps/keyvalue/batch.wit"),
    wit_file!("wit/deps/keyvalue/store.wit"),
    wit_file!("wit/deps/keyvalue/watch.wit"),
    wit_file!("wit/deps/keyvalue/world.wit"),
];

/// The built-in buildpacks in detection order: the first whose `bin/detect` accepts an
/// app builds it. Source languages come before `wasm`, so a Rust or Python project that
/// happens to hold a stray `.wasm` file is still built from source; prebuilt components
/// are the fallback.
const BUILTIN: &[Builtin] = &[
    Builtin {
        name: "rust",
        looks_for: "Cargo.toml",
        files: &[
            bp_file!("rust", "bin/detect"),
            bp_file!("rust", "bin/compile"),
        ],
        extra: &[],
    },
    Builtin {
        name: "python",
        looks_for: "requirements.txt, pyproject.toml or a top-level *.py file",
        files: &[
            bp_file!("python", "bin/detect"),
            bp_file!("python", "bin/compile"),
            // Beside the platform's world.wit, whose package it belongs to.
            (
                "wit/py-worlds.wit",
                include_str!("../../../buildpacks/python/py-worlds.wit"),
            ),
        ],
        extra: PLATFORM_WIT,
    },
    Builtin {
        name: "javascript",
        looks_for: "package.json",
        files: &[
            bp_file!("javascript", "bin/detect"),
            bp_file!("javascript", "bin/compile"),
            bp_file!("javascript", "js-worlds.wit"),
            bp_file!("javascript", "lib/prepare.mjs"),
        ],
        extra: PLATFORM_WIT,
    },
    Builtin {
        name: "wasm",
        looks_for: "prebuilt components: *.wasm files at the top level (+ a Procfile)",
        files: &[
            bp_file!("wasm", "bin/detect"),
            bp_file!("wasm", "bin/compile"),
        ],
        extra: &[],
    },
];

impl Buildpack {
    /// Writes the built-in buildpacks under `root` (once per content) and returns them in order.
    ///
    /// They are embedded so that an installed `wdeploy` binary needs no checkout beside it.
    pub fn builtin(root: &Path) -> anyhow::Result<Vec<Buildpack>> {
        BUILTIN
            .iter()
            .map(|bp| {
                let mut all = Vec::new();
                let files: Vec<_> = bp.files.iter().chain(bp.extra).copied().collect();
                for (path, text) in &files {
                    all.extend_from_slice(path.as_bytes());
                    all.push(0);
                    all.extend_from_slice(text.as_bytes());
                    all.push(0);
                }
                let hash = wdeploy_core::Digest::of_bytes(&all);
                let dir = root.join(format!("{}-{}", bp.name, hash.hex_prefix(12)));
                if !dir.join("bin/compile").exists() {
                    write_buildpack(&dir, &files)
                        .with_context(|| format!("installing the {} buildpack", bp.name))?;
                }
                Ok(Buildpack {
                    name: bp.name.to_string(),
                    dir,
                    looks_for: bp.looks_for.to_string(),
                })
            })
            .collect()
    }

    /// A third-party buildpack: any folder with executable `bin/detect` and `bin/compile`.
    pub fn from_dir(dir: &Path) -> anyhow::Result<Buildpack> {
        let dir = dir
            .canonicalize()
            .with_context(|| format!("buildpack folder {} not found", dir.display()))?;
        for file in ["bin/detect", "bin/compile"] {
            if !dir.join(file).is_file() {
                bail!(
                    "{} is not a buildpack: it has no {file} (a buildpack is a folder with bin/detect and bin/compile)",
                    dir.display()
                );
            }
        }
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "custom".to_string());
        Ok(Buildpack {
            looks_for: format!("what {}/bin/detect accepts", dir.display()),
            name,
            dir,
        })
    }

    /// The buildpack `--buildpack SPEC` names: a built-in by name, else a folder path.
    pub fn choose(builtin: &[Buildpack], spec: &str) -> anyhow::Result<Buildpack> {
        if let Some(bp) = builtin.iter().find(|b| b.name == spec) {
            return Ok(bp.clone());
        }
        let path = Path::new(spec);
        if path.is_dir() {
            return Buildpack::from_dir(path);
        }
        let names: Vec<_> = builtin.iter().map(|b| b.name.as_str()).collect();
        bail!(
            "unknown buildpack `{spec}`: name a built-in one ({}) or a folder with bin/detect and bin/compile",
            names.join(", ")
        )
    }

    /// Runs `bin/detect APP_DIR`: exit 0 means this buildpack builds the app.
    pub fn detect(&self, app_dir: &Path) -> anyhow::Result<bool> {
        let status = Command::new(self.dir.join("bin/detect"))
            .arg(app_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .with_context(|| format!("running {}/bin/detect", self.dir.display()))?;
        Ok(status.success())
    }

    /// Runs `bin/compile BUILD CACHE ENV`, handing each output line to `output` as it comes.
    pub fn compile(&self, dirs: &BuildDirs, output: &mut dyn FnMut(&str)) -> anyhow::Result<()> {
        let mut child = Command::new(self.dir.join("bin/compile"))
            .arg(dirs.build())
            .arg(dirs.cache())
            .arg(dirs.env())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {}/bin/compile", self.dir.display()))?;
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let readers: Vec<_> = [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        .map(|pipe| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })
        })
        .collect();
        drop(tx);
        for line in rx {
            output(&line);
        }
        for r in readers {
            let _ = r.join();
        }
        let status = child.wait()?;
        if !status.success() {
            bail!(
                "the {} buildpack failed to compile the app ({status})",
                self.name
            );
        }
        Ok(())
    }
}

fn write_buildpack(dir: &Path, files: &[(&str, &str)]) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // Write to a temporary sibling and rename, so a concurrent build never sees half a buildpack.
    let parent = dir.parent().context("buildpack dir has no parent")?;
    std::fs::create_dir_all(parent)?;
    let tmp = tempfile::Builder::new().prefix(".bp-").tempdir_in(parent)?;
    for (file, text) in files {
        let path = tmp.path().join(file);
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder)?;
        }
        std::fs::write(&path, text)?;
        if file.starts_with("bin/") {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    let tmp = tmp.keep();
    if std::fs::rename(&tmp, dir).is_err() {
        // Another process installed it first; theirs is identical.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Ok(())
}

/// The directories of one app's builds, stable across builds so caches stay warm.
#[derive(Debug, Clone)]
pub struct BuildDirs {
    root: PathBuf,
}

impl BuildDirs {
    pub fn new(root: impl Into<PathBuf>) -> BuildDirs {
        BuildDirs { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// Where the source is mirrored and the slug is produced.
    pub fn build(&self) -> PathBuf {
        self.root.join("build")
    }
    /// The buildpack's cache, kept between builds.
    pub fn cache(&self) -> PathBuf {
        self.root.join("cache")
    }
    /// Finished slugs by id, immutable once written.
    pub fn slugs(&self) -> PathBuf {
        self.root.join("slugs")
    }
    /// One file per config var, as Heroku's ENV_DIR.
    pub fn env(&self) -> PathBuf {
        self.root.join("env")
    }
}

/// What to build and how.
pub struct BuildRequest<'a> {
    pub app_dir: &'a Path,
    pub dirs: &'a BuildDirs,
    /// Candidate buildpacks in detection order (or just the one the user chose).
    pub buildpacks: &'a [Buildpack],
    /// The user named the buildpack (`--buildpack`): compile with `buildpacks[0]`
    /// without asking its `bin/detect`, as the user knows better.
    pub forced: bool,
    pub env: &'a BTreeMap<String, String>,
}

/// Detects, compiles and packs an app. Holds a lock on the build dirs for the whole build,
/// so two builds of the same app (two terminals, parallel tests) take turns.
pub fn build(req: &BuildRequest<'_>, output: &mut dyn FnMut(&str)) -> anyhow::Result<Slug> {
    std::fs::create_dir_all(req.dirs.root())
        .with_context(|| format!("creating {}", req.dirs.root().display()))?;
    let lock = std::fs::File::create(req.dirs.root().join("lock"))?;
    lock.lock().context("locking the build directory")?;

    // A broken Procfile is reported before minutes of compiling, not after.
    match std::fs::read_to_string(req.app_dir.join("Procfile")) {
        Ok(text) => {
            wdeploy_core::Procfile::parse(&text)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(anyhow::Error::new(e).context("reading the Procfile")),
    }
    let buildpack = match (req.forced, req.buildpacks) {
        (true, [only]) => {
            if !req.app_dir.is_dir() {
                bail!("{} is not a directory", req.app_dir.display());
            }
            output(&format!(
                "-----> Using the {} buildpack (--buildpack)",
                only.name
            ));
            only
        }
        _ => {
            let bp = select(req.buildpacks, req.app_dir)?;
            output(&format!("-----> {} app detected", bp.name));
            bp
        }
    };
    let fingerprint = cache::fingerprint(req.app_dir, &buildpack.dir, req.env)?;
    let slug = match cache::lookup(req.dirs.root(), &req.dirs.slugs(), &fingerprint) {
        Some(slug) => {
            output("-----> Build cached (no source change)");
            slug
        }
        None => {
            sync::mirror(req.app_dir, &req.dirs.build())?;
            std::fs::create_dir_all(req.dirs.cache())?;
            write_env_dir(&req.dirs.env(), req.env)?;
            buildpack.compile(req.dirs, output)?;
            let slug = Slug::pack(&req.dirs.build())?.persist(&req.dirs.slugs())?;
            cache::save(req.dirs.root(), &fingerprint, &slug)
                .context("saving the build cache record")?;
            slug
        }
    };
    output(&format!(
        "-----> Slug {} ({} components: {})",
        slug.id().abbreviated(),
        slug.manifest.components.len(),
        slug.manifest.names()
    ));
    Ok(slug)
}

/// The first buildpack whose `bin/detect` accepts the app.
pub fn select<'a>(buildpacks: &'a [Buildpack], app_dir: &Path) -> anyhow::Result<&'a Buildpack> {
    if !app_dir.is_dir() {
        bail!("{} is not a directory", app_dir.display());
    }
    for bp in buildpacks {
        if bp.detect(app_dir)? {
            return Ok(bp);
        }
    }
    let tried: String = buildpacks
        .iter()
        .map(|b| format!("\n  {:<11} looks for {}", b.name, b.looks_for))
        .collect();
    bail!(
        "no buildpack detected an app in {}; tried in order:{tried}\n\
         (choose one with --buildpack NAME|PATH)",
        app_dir.display(),
    )
}

fn write_env_dir(dir: &Path, env: &BTreeMap<String, String>) -> anyhow::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    for (k, v) in env {
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("config var name `{k}` is not valid (use letters, digits and `_`)");
        }
        std::fs::write(dir.join(k), v)?;
    }
    Ok(())
}
