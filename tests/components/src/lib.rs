//! Test-only guest components, built once by `build.rs` from the standalone projects
//! under `guests/` and named here by path, for the end-to-end tests to deploy as prebuilt
//! components (the `wasm` buildpack) instead of compiling them in each test.
//!
//! - `faults`: `web` (routes that trap, loop, hog memory, sleep, flood the log…),
//!   `crasher` (a worker that exits with status 1 at once), `spinner` (a worker that
//!   busy-loops and ignores stdin), `echo` (a command that reads stdin to its end);
//! - `stranger`: a worker importing `wasi:foo/bar@1.0.0`, which no host provides;
//! - `stuck`: a web component whose start function loops forever once the clock passes
//!   `BOOT_LOOP_AFTER` (Unix seconds, a config var);
//! - `async-web`: a WASI 0.3 (component-model async) web component exporting
//!   `wasi:http/handler@0.3.0`, with a streamed body, an add-on call, a trap and a loop;
//! - `idioms`: a WASI 0.2 web component writing its body in a different way on each path
//!   (`writeln!` + `flush`, `blocking-write-and-flush`, several `write` + `flush`, one
//!   `write` then `finish`; large, slow, with trailers, trapping half way).

use std::path::Path;

/// `faults`' web component (`web.wasm`).
pub const FAULTS_WEB: &str = env!("WDEPLOY_TEST_COMPONENT_FAULTS_WEB");
/// `faults`' crashing worker (`crasher.wasm`).
pub const FAULTS_CRASHER: &str = env!("WDEPLOY_TEST_COMPONENT_FAULTS_CRASHER");
/// `faults`' busy-looping worker (`spinner.wasm`).
pub const FAULTS_SPINNER: &str = env!("WDEPLOY_TEST_COMPONENT_FAULTS_SPINNER");
/// `faults`' command reading its stdin (`echo.wasm`).
pub const FAULTS_ECHO: &str = env!("WDEPLOY_TEST_COMPONENT_FAULTS_ECHO");
/// The worker importing an interface no host provides (`stranger.wasm`).
pub const STRANGER: &str = env!("WDEPLOY_TEST_COMPONENT_STRANGER");
/// The web component whose start function can loop (`stuck.wasm`).
pub const STUCK: &str = env!("WDEPLOY_TEST_COMPONENT_STUCK");

/// The WASI 0.3 web component (`async_web.wasm`).
pub const ASYNC_WEB: &str = env!("WDEPLOY_TEST_COMPONENT_ASYNC_WEB");

/// The web component writing its body in each of the usual ways (`idioms.wasm`).
pub const IDIOMS: &str = env!("WDEPLOY_TEST_COMPONENT_IDIOMS");

/// Every component `faults` builds.
pub const FAULTS: &[&str] = &[FAULTS_WEB, FAULTS_CRASHER, FAULTS_SPINNER, FAULTS_ECHO];
/// `faults`' own Procfile (`web: web`, `worker: crasher`).
pub const FAULTS_PROCFILE: &str = include_str!("../guests/faults/Procfile");
/// `stranger`'s own Procfile (`worker: stranger`).
pub const STRANGER_PROCFILE: &str = include_str!("../guests/stranger/Procfile");
/// `stuck`'s own Procfile (`web: stuck`).
pub const STUCK_PROCFILE: &str = include_str!("../guests/stuck/Procfile");
/// `async-web`'s own Procfile (`web: async_web`).
pub const ASYNC_WEB_PROCFILE: &str = include_str!("../guests/async-web/Procfile");
/// `idioms`' own Procfile (`web: idioms`).
pub const IDIOMS_PROCFILE: &str = include_str!("../guests/idioms/Procfile");

/// Lays out an app folder the `wasm` buildpack deploys as it is: each of `components`
/// copied to the top of `dir` under its file name, and `procfile` as its `Procfile`.
/// Creates `dir` if it is missing.
pub fn lay_out_app(dir: &Path, components: &[&str], procfile: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for component in components {
        let from = Path::new(component);
        let name = from
            .file_name()
            .ok_or_else(|| std::io::Error::other(format!("{component} names no file")))?;
        std::fs::copy(from, dir.join(name))?;
    }
    std::fs::write(dir.join("Procfile"), procfile)
}

/// The `faults` app: its four components and its own Procfile.
pub fn faults_app(dir: &Path) -> std::io::Result<()> {
    lay_out_app(dir, FAULTS, FAULTS_PROCFILE)
}

/// The `stuck` app: its component and its own Procfile.
pub fn stuck_app(dir: &Path) -> std::io::Result<()> {
    lay_out_app(dir, &[STUCK], STUCK_PROCFILE)
}

/// The `async-web` app: its component and its own Procfile.
pub fn async_web_app(dir: &Path) -> std::io::Result<()> {
    lay_out_app(dir, &[ASYNC_WEB], ASYNC_WEB_PROCFILE)
}

/// The `idioms` app: its component and its own Procfile.
pub fn idioms_app(dir: &Path) -> std::io::Result<()> {
    lay_out_app(dir, &[IDIOMS], IDIOMS_PROCFILE)
}

/// The `stranger` app: its component and its own Procfile.
pub fn stranger_app(dir: &Path) -> std::io::Result<()> {
    lay_out_app(dir, &[STRANGER], STRANGER_PROCFILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The preamble of a WebAssembly component (a core module has version 1, layer 0).
    const COMPONENT_HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

    #[test]
    fn every_constant_names_a_built_component() {
        for (path, file) in [
            (FAULTS_WEB, "web.wasm"),
            (FAULTS_CRASHER, "crasher.wasm"),
            (FAULTS_SPINNER, "spinner.wasm"),
            (FAULTS_ECHO, "echo.wasm"),
            (STRANGER, "stranger.wasm"),
            (STUCK, "stuck.wasm"),
            (ASYNC_WEB, "async_web.wasm"),
            (IDIOMS, "idioms.wasm"),
        ] {
            assert!(path.ends_with(file), "{path}");
            let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(bytes[..8], COMPONENT_HEADER, "{path} is not a component");
        }
    }

    #[test]
    fn an_app_folder_holds_the_components_and_the_procfile() {
        let tmp = tempfile::tempdir().unwrap();
        let app = tmp.path().join("faults");
        faults_app(&app).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(&app)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "Procfile",
                "crasher.wasm",
                "echo.wasm",
                "spinner.wasm",
                "web.wasm"
            ]
        );
        assert_eq!(
            std::fs::read_to_string(app.join("Procfile")).unwrap(),
            "web: web\nworker: crasher\n"
        );
        stranger_app(&tmp.path().join("stranger")).unwrap();
        assert!(tmp.path().join("stranger/stranger.wasm").is_file());
    }
}
