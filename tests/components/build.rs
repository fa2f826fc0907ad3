//! Builds the test-only guests under `guests/` once, with `cargo build --release --target
//! wasm32-wasip2`, and hands the components' paths to `src/lib.rs` as environment
//! variables (`WDEPLOY_TEST_COMPONENT_<CONSTANT>`).
//!
//! The nested cargo gets its own target dir (`<target dir>/test-components`), so it never
//! waits on the lock of the build that runs this script, and none of that build's
//! environment (flags, wrappers, target dir, jobserver): the guests build as they would by
//! hand. A missing `wasm32-wasip2` target is installed with rustup, as the Rust
//! buildpack does.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const TARGET: &str = "wasm32-wasip2";

/// Each guest (a folder of `guests/`) and the components it builds: (constant, file).
const GUESTS: &[(&str, &[(&str, &str)])] = &[
    (
        "faults",
        &[
            ("FAULTS_WEB", "web.wasm"),
            ("FAULTS_CRASHER", "crasher.wasm"),
            ("FAULTS_SPINNER", "spinner.wasm"),
            ("FAULTS_ECHO", "echo.wasm"),
        ],
    ),
    ("stranger", &[("STRANGER", "stranger.wasm")]),
    ("stuck", &[("STUCK", "stuck.wasm")]),
    ("async-web", &[("ASYNC_WEB", "async_web.wasm")]),
    ("idioms", &[("IDIOMS", "idioms.wasm")]),
];

/// Variables of the outer build that must not reach the nested one.
const OUTER_VARS: &[&str] = &[
    "CARGO",
    "RUSTC",
    "RUSTDOC",
    "RUSTFLAGS",
    "RUSTDOCFLAGS",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTC_LINKER",
    "OUT_DIR",
    "TARGET",
    "HOST",
    "PROFILE",
    "OPT_LEVEL",
    "DEBUG",
    "NUM_JOBS",
    "MAKEFLAGS",
    "MFLAGS",
];

/// `CARGO_*` variables the nested cargo keeps: where its home is and how it reaches the
/// registry. Every other `CARGO_*` (`CARGO_TARGET_DIR`, `CARGO_BUILD_*`,
/// `CARGO_ENCODED_RUSTFLAGS`, `CARGO_MAKEFLAGS`, `CARGO_PROFILE_*`, the package's own…) goes.
const KEPT_CARGO_VARS: &[&str] = &[
    "CARGO_HOME",
    "CARGO_NET_",
    "CARGO_HTTP_",
    "CARGO_REGISTRY_",
    "CARGO_REGISTRIES_",
];

fn main() {
    let manifest_dir = PathBuf::from(var("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(var("OUT_DIR"));
    let target_dir = outer_target_dir(&out_dir, &manifest_dir).join("test-components");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    println!("cargo:rerun-if-changed=build.rs");

    ensure_target();
    for (guest, components) in GUESTS {
        let dir = manifest_dir.join("guests").join(guest);
        for watched in ["src", "Cargo.toml", "Cargo.lock"] {
            println!("cargo:rerun-if-changed={}", dir.join(watched).display());
        }
        let mut cmd = Command::new(&cargo);
        cmd.current_dir(&dir)
            .args(["build", "--release", "--locked", "--target", TARGET])
            .arg("--target-dir")
            .arg(&target_dir)
            // Cargo reads this script's stdout for directives: the build's output goes to
            // stderr, which cargo shows when the script fails.
            .stdout(Stdio::from(std::io::stderr()));
        clear_outer_env(&mut cmd);
        let status = cmd
            .status()
            .unwrap_or_else(|e| panic!("cannot run cargo to build guests/{guest}: {e}"));
        assert!(
            status.success(),
            "building guests/{guest} for {TARGET} failed ({status}): see the errors above"
        );

        let built = target_dir.join(TARGET).join("release");
        let into = out_dir.join("components").join(guest);
        std::fs::create_dir_all(&into).expect("creating OUT_DIR/components");
        for (constant, file) in *components {
            let from = built.join(file);
            let to = into.join(file);
            std::fs::copy(&from, &to)
                .unwrap_or_else(|e| panic!("guests/{guest} built no {}: {e}", from.display()));
            println!(
                "cargo:rustc-env=WDEPLOY_TEST_COMPONENT_{constant}={}",
                to.display()
            );
        }
    }
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("cargo sets {name} for build scripts"))
}

/// The outer build's target dir: the ancestor of OUT_DIR that cargo marked with
/// `CACHEDIR.TAG` (wherever `CARGO_TARGET_DIR` or `build.target-dir` put it), else the
/// workspace's `target/`.
fn outer_target_dir(out_dir: &Path, manifest_dir: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest_dir.join("../../target"))
}

fn clear_outer_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let cargo_var = (key.starts_with("CARGO_") || key.starts_with("__CARGO"))
            && !KEPT_CARGO_VARS
                .iter()
                .any(|kept| key == *kept || (kept.ends_with('_') && key.starts_with(kept)));
        if cargo_var || OUTER_VARS.contains(&key) {
            cmd.env_remove(key);
        }
    }
}

/// Installs the wasm32-wasip2 target with rustup when it is missing. Without rustup,
/// the build below says what is missing.
fn ensure_target() {
    let installed = || -> Option<bool> {
        let out = Command::new("rustup")
            .args(["target", "list", "--installed"])
            .output()
            .ok()
            .filter(|out| out.status.success())?;
        Some(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|line| line.trim() == TARGET),
        )
    };
    if installed() != Some(false) {
        return;
    }
    // The same lock as the Rust buildpack's: one installs, the others wait for it.
    let lock_path = std::env::temp_dir().join("wdeploy-rustup-target.lock");
    let lock = std::fs::File::create(&lock_path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", lock_path.display()));
    lock.lock()
        .unwrap_or_else(|e| panic!("cannot lock {}: {e}", lock_path.display()));
    if installed() == Some(false) {
        let status = Command::new("rustup")
            .args(["target", "add", TARGET])
            .stdout(Stdio::from(std::io::stderr()))
            .status()
            .expect("running rustup target add");
        assert!(
            status.success(),
            "could not install the {TARGET} target (try: rustup target add {TARGET})"
        );
    }
}
