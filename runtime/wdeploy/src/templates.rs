//! `wdeploy new NAME`: a new app from a template, as `spin new` and `cargo new` start one.
//!
//! The templates are the repository's samples, included in the binary (an installed
//! `wdeploy` has no checkout beside it), so every template is an app the test suite builds
//! and runs. Only the package's name changes, to the new app's.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};

/// One template: a sample's files, and the package name they carry.
struct Template {
    name: &'static str,
    about: &'static str,
    /// The sample's directory under `samples/`.
    sample: &'static str,
    /// The package name in its `Cargo.toml` and `Cargo.lock`, or its `package.json`.
    package: &'static str,
    files: &'static [(&'static str, &'static str)],
    /// Whether the app keeps a copy of the platform's WIT in `wit/` (Rust bindings).
    platform_wit: bool,
    /// What `.gitignore` leaves out: the build's own output.
    ignore: &'static str,
}

/// Includes a file of `samples/SAMPLE/`, stored at its path inside the sample.
macro_rules! sample_file {
    ($sample:literal, $path:literal) => {
        (
            $path,
            include_str!(concat!("../../../samples/", $sample, "/", $path)),
        )
    };
}

const TEMPLATES: &[Template] = &[
    Template {
        name: "rust",
        about: "a web handler, a worker and a release command in Rust",
        sample: "hello",
        package: "hello",
        files: &[
            sample_file!("hello", "Procfile"),
            sample_file!("hello", "Cargo.toml"),
            sample_file!("hello", "Cargo.lock"),
            sample_file!("hello", ".env.example"),
            sample_file!("hello", "src/web.rs"),
            sample_file!("hello", "src/worker.rs"),
            sample_file!("hello", "src/release.rs"),
        ],
        platform_wit: false,
        ignore: "target/\n",
    },
    Template {
        name: "rust-counter",
        about: "a Rust web handler counting visits in the durable key-value add-on",
        sample: "counter",
        package: "counter",
        files: &[
            sample_file!("counter", "Procfile"),
            sample_file!("counter", "Cargo.toml"),
            sample_file!("counter", "Cargo.lock"),
            sample_file!("counter", "src/web.rs"),
        ],
        platform_wit: true,
        ignore: "target/\n",
    },
    Template {
        name: "rust-jobs",
        about: "a Rust web handler queueing jobs and a worker taking them (queue add-on)",
        sample: "jobs",
        package: "jobs",
        files: &[
            sample_file!("jobs", "Procfile"),
            sample_file!("jobs", "Cargo.toml"),
            sample_file!("jobs", "Cargo.lock"),
            sample_file!("jobs", "src/web.rs"),
            sample_file!("jobs", "src/worker.rs"),
            sample_file!("jobs", "src/addons.rs"),
        ],
        platform_wit: true,
        ignore: "target/\n",
    },
    Template {
        name: "python",
        about: "a web handler and a worker in Python (componentize-py)",
        sample: "python-web",
        package: "",
        files: &[
            sample_file!("python-web", "Procfile"),
            sample_file!("python-web", "requirements.txt"),
            sample_file!("python-web", "web.py"),
            sample_file!("python-web", "worker.py"),
        ],
        platform_wit: false,
        ignore: "__pycache__/\n",
    },
    Template {
        name: "javascript",
        about: "a web handler and a worker in JavaScript (componentize-js)",
        sample: "js-web",
        package: "js-web",
        files: &[
            sample_file!("js-web", "Procfile"),
            sample_file!("js-web", "package.json"),
            sample_file!("js-web", "web.js"),
            sample_file!("js-web", "worker.js"),
        ],
        platform_wit: false,
        ignore: "node_modules/\n",
    },
];

#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The new app's directory (made here; its last part names the package)
    #[arg(required_unless_present = "list")]
    pub dir: Option<PathBuf>,
    /// The template: rust, rust-counter, rust-jobs, python or javascript
    #[arg(short, long, default_value = "rust")]
    pub template: String,
    /// List the templates
    #[arg(long)]
    pub list: bool,
}

pub fn new_app(args: NewArgs) -> anyhow::Result<()> {
    if args.list {
        for t in TEMPLATES {
            println!("{:<14} {} (samples/{})", t.name, t.about, t.sample);
        }
        return Ok(());
    }
    let Some(dir) = args.dir else {
        bail!("give the new app's directory: `wdeploy new DIR`");
    };
    let Some(template) = TEMPLATES.iter().find(|t| t.name == args.template) else {
        let names: Vec<_> = TEMPLATES.iter().map(|t| t.name).collect();
        bail!(
            "no template `{}`: the templates are {} (`wdeploy new --list`)",
            args.template,
            names.join(", ")
        );
    };
    let package = crate::building::dir_key(&absolute(&dir)?)?;
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        bail!(
            "{} exists and is not empty: `wdeploy new` makes a new directory (give another)",
            dir.display()
        );
    }
    for (path, text) in files(template, package.as_str()) {
        let to = dir.join(path);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&to, text).with_context(|| format!("writing {}", to.display()))?;
    }
    println!(
        "Created {} in {}: {}",
        package,
        dir.display(),
        template.about
    );
    println!("Next:");
    if dir != Path::new(".") {
        println!("  cd {}", dir.display());
    }
    println!("  wdeploy dev              # run it here, rebuilding on every change");
    println!("  wdeploy apps:create {package}");
    println!("  wdeploy push             # deploy it to the host you are logged in to");
    Ok(())
}

/// The directory as an absolute path (for its name when it is `.` or `..`-relative).
fn absolute(dir: &Path) -> anyhow::Result<PathBuf> {
    let joined = std::env::current_dir()?.join(dir);
    // `std::path::absolute` keeps `..`: resolve what exists, then add what does not yet.
    Ok(match joined.parent().and_then(|p| p.canonicalize().ok()) {
        Some(parent) => parent.join(joined.file_name().unwrap_or_default()),
        None => joined,
    })
}

/// Every file of the new app: the sample's with the package renamed, the platform's WIT
/// where the template keeps it, and a `.gitignore`.
fn files(template: &Template, package: &str) -> Vec<(&'static str, String)> {
    let rename = |path: &str, text: &str| -> String {
        if template.package.is_empty() {
            return text.to_string();
        }
        match path {
            "Cargo.toml" | "Cargo.lock" => text.replacen(
                &format!("name = \"{}\"", template.package),
                &format!("name = \"{package}\""),
                1,
            ),
            "package.json" => text.replacen(
                &format!("\"name\": \"{}\"", template.package),
                &format!("\"name\": \"{package}\""),
                1,
            ),
            _ => text.to_string(),
        }
    };
    let mut out: Vec<(&'static str, String)> = template
        .files
        .iter()
        .map(|(path, text)| (*path, rename(path, text)))
        .collect();
    if template.platform_wit {
        out.extend(
            wdeploy_buildpack::PLATFORM_WIT
                .iter()
                .map(|(path, text)| (*path, text.to_string())),
        );
    }
    out.push((".gitignore", template.ignore.to_string()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_dir(sample: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../samples")
            .join(sample)
    }

    /// Every file under `dir` but build output, as paths relative to it.
    fn tree(dir: &Path, under: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if ["target", "node_modules", "__pycache__", ".wdeploy"].contains(&name.as_str()) {
                continue;
            }
            if path.is_dir() {
                tree(&path, under, out);
            } else {
                out.push(path.strip_prefix(under).unwrap().display().to_string());
            }
        }
    }

    #[test]
    fn each_template_is_its_sample_whole_with_the_package_renamed() {
        for t in TEMPLATES {
            let dir = sample_dir(t.sample);
            let written = files(t, "my-app");
            let mut on_disk = Vec::new();
            tree(&dir, &dir, &mut on_disk);
            on_disk.sort();
            let mut listed: Vec<String> = written
                .iter()
                .map(|(p, _)| p.to_string())
                .filter(|p| p != ".gitignore")
                .collect();
            listed.sort();
            assert_eq!(listed, on_disk, "template {} misses or adds files", t.name);
            for (path, text) in &written {
                if *path == ".gitignore" {
                    continue;
                }
                let sample = std::fs::read_to_string(dir.join(path)).unwrap();
                let expected = match (t.package, *path) {
                    ("", _) => sample,
                    (pkg, "Cargo.toml" | "Cargo.lock") => {
                        sample.replacen(&format!("name = \"{pkg}\""), "name = \"my-app\"", 1)
                    }
                    (pkg, "package.json") => {
                        sample.replacen(&format!("\"name\": \"{pkg}\""), "\"name\": \"my-app\"", 1)
                    }
                    _ => sample,
                };
                assert_eq!(*text, expected, "{}: {path}", t.name);
                if ["Cargo.toml", "Cargo.lock", "package.json"].contains(path)
                    && !t.package.is_empty()
                {
                    assert!(text.contains("my-app"), "{}: {path} kept its name", t.name);
                }
            }
        }
    }
}
