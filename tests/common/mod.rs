//! Shared helpers of the end-to-end tests: paths, the real `wdeploy` binary, HTTP.
//!
//! Every test builds samples through the real buildpack with one shared cache
//! (`target/e2e-cache`), so each sample is compiled once per machine, not once per test.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

pub fn sample(name: &str) -> PathBuf {
    match name {
        // The test-only guests live with the tests (wdeploy-test-components).
        "faults" | "stranger" => root().join("tests/components/guests").join(name),
        _ => root().join("samples").join(name),
    }
}

/// The build cache every test shares.
pub fn cache_dir() -> PathBuf {
    root().join("target/e2e-cache")
}

pub fn wdeploy() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wdeploy"));
    cmd.env("WDEPLOY_CACHE_DIR", cache_dir())
        .env_remove("PORT")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    cmd
}

/// A copy of a sample in a temp dir, for tests that edit the source.
pub fn copy_sample(name: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("wdeploy-app-")
        .tempdir()
        .expect("tempdir");
    copy_tree(&sample(name), dir.path());
    dir
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "target" {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A running `wdeploy` process whose stdout lines are collected as they come.
pub struct Running {
    child: Child,
    lines: Arc<(Mutex<Output>, Condvar)>,
}

/// What the process printed, and how many of its two pipes have closed.
#[derive(Default)]
struct Output {
    lines: Vec<String>,
    closed: usize,
}

impl Running {
    pub fn spawn(mut cmd: Command) -> Running {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn wdeploy");
        let lines = Arc::new((Mutex::new(Output::default()), Condvar::new()));
        for pipe in [
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
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                let (store, cv) = &*lines;
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    store
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .lines
                        .push(line);
                    cv.notify_all();
                }
                store.lock().unwrap_or_else(|e| e.into_inner()).closed += 1;
                cv.notify_all();
            });
        }
        Running { child, lines }
    }

    /// Waits until a line matching `pred` appears (searching from the start), or panics
    /// at the deadline or as soon as the process has exited without printing it.
    pub fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        let (store, cv) = &*self.lines;
        let mut out = store.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(line) = out.lines.iter().find(|l| pred(l)) {
                return line.clone();
            }
            if out.closed == 2 {
                panic!(
                    "wdeploy exited before printing {what}; output:\n{}",
                    out.lines.join("\n")
                );
            }
            let now = Instant::now();
            if now >= deadline {
                panic!(
                    "timed out waiting for {what}; output so far:\n{}",
                    out.lines.join("\n")
                );
            }
            out = cv
                .wait_timeout(out, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    pub fn wait_for_text(&self, text: &str, timeout: Duration) -> String {
        self.wait_for(text, timeout, |l| l.contains(text))
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .lines
            .clone()
    }

    pub fn output(&self) -> String {
        self.lines
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .lines
            .join("\n")
    }

    /// The router port from the `listening on http://127.0.0.1:PORT` line.
    pub fn port(&self) -> u16 {
        let line = self.wait_for_text("listening on http://127.0.0.1:", Duration::from_secs(600));
        let tail = line.split("http://127.0.0.1:").nth(1).unwrap();
        tail.split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGINT (Ctrl-C) and waits for the exit.
    pub fn interrupt(&mut self, timeout: Duration) -> ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-INT", &pid]).status().unwrap();
        self.wait(timeout)
    }

    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader threads take the last lines.
                std::thread::sleep(Duration::from_millis(50));
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!(
                    "wdeploy did not exit in {timeout:?}; output:\n{}",
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client that returns error statuses instead of failing on them.
pub fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// GET a URL: (status, body).
pub fn get(url: &str) -> (u16, String) {
    try_get(url).unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// GET a URL, with transport errors as values.
pub fn try_get(url: &str) -> Result<(u16, String), ureq::Error> {
    let mut response = http().get(url).call()?;
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string()?;
    Ok((status, body))
}

/// POST a body to a URL: (status, body).
pub fn post(url: &str, body: &str) -> (u16, String) {
    let mut response = http()
        .post(url)
        .send(body.as_bytes())
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    (status, body)
}

/// The `hello` sample's components built by running the Rust buildpack's `bin/compile`
/// directly (not through wdeploy), for tests of prebuilt-component apps. Returns the
/// folder holding `web.wasm`, `worker.wasm` and `release.wasm`. A lock file makes
/// concurrent tests take turns.
pub fn prebuilt_hello() -> PathBuf {
    let root = cache_dir().join("prebuilt-hello");
    std::fs::create_dir_all(&root).unwrap();
    let lock = std::fs::File::create(root.join("lock")).unwrap();
    lock.lock().unwrap();
    let build = root.join("build");
    if !build.join("web.wasm").exists() {
        copy_tree(&sample("hello"), &build);
        let status = Command::new(root_buildpack("rust").join("bin/compile"))
            .arg(&build)
            .arg(root.join("cache"))
            .arg(root.join("env"))
            .status()
            .expect("running the rust buildpack");
        assert!(status.success(), "building samples/hello failed");
    }
    build
}

/// A buildpack folder of this checkout.
pub fn root_buildpack(name: &str) -> PathBuf {
    root().join("buildpacks").join(name)
}

/// An app folder of prebuilt components: hello's three, and its Procfile.
pub fn prebuilt_app(into: &Path) {
    let built = prebuilt_hello();
    for name in ["web.wasm", "worker.wasm", "release.wasm"] {
        std::fs::copy(built.join(name), into.join(name)).unwrap();
    }
    std::fs::copy(sample("hello").join("Procfile"), into.join("Procfile")).unwrap();
}
