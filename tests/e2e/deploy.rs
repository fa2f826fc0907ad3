//! Deploying to a host: push, config vars, rollback, scaling, one-off dynos, logs,
//! shell completions (releases themselves: `releases.rs`).

use crate::fixture::*;

/// A config change says what it did: before the first push there is nothing to restart,
/// so the vars are said to wait for it (and the push runs with them); after, the dynos
/// restarted, with the release the change made; unsetting what is not set makes none.
#[test]
fn config_changes_before_the_first_push_say_they_wait_for_it() {
    let host = TestHost::start();
    host.ok(&["apps:create", "early", "--no-link"]);
    assert_eq!(
        host.ok(&[
            "config:set",
            "GREETING=early bird",
            "LEFT=over",
            "-a",
            "early"
        ]),
        "Set GREETING, LEFT on early, v1 (nothing is deployed yet: it applies from the first push)\n"
    );
    assert_eq!(
        host.ok(&["config:unset", "LEFT", "-a", "early"]),
        "Unset LEFT on early, v2 (nothing is deployed yet: it applies from the first push)\n"
    );

    host.push("early", faults_app().with_procfile("web: web\n").path());
    assert_eq!(
        host.get("early", "/env?name=GREETING"),
        (200, "early bird\n".into())
    );
    assert_eq!(
        host.ok(&["config:set", "GREETING=on time", "-a", "early"]),
        "Set GREETING and restarted early, v4\n"
    );
    assert_eq!(
        host.get("early", "/env?name=GREETING"),
        (200, "on time\n".into())
    );
    assert_eq!(
        host.ok(&["config:unset", "GREETING", "-a", "early"]),
        "Unset GREETING and restarted early, v5\n"
    );
    // Keys that are not set change nothing: no release, no restart.
    let out = host.cli(&["config:unset", "GREETING", "NEVER", "-a", "early"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Nothing changed on early\n"
    );
    assert_eq!(stderr(&out), "GREETING, NEVER are not set on early\n");
    let releases = host.ok(&["releases", "-n", "1", "-a", "early"]);
    assert!(releases.contains("v5 "), "{releases}");

    // An env file as `config --shell` writes it: every value as it was, pairs over it.
    let dir = tempfile::tempdir().unwrap();
    let file = write_env(
        dir.path(),
        "PEM='-----BEGIN X-----\nline two\n-----END X-----'\nQUOTE=\"say \\\"hi\\\"\"\nPLAIN=file\n",
    );
    let file = file.to_str().unwrap();
    assert_eq!(
        host.ok(&["config:set", "--env-file", file, "PLAIN=arg", "-a", "early"]),
        "Set PEM, PLAIN, QUOTE and restarted early, v6\n"
    );
    let get = |key: &str| host.ok(&["config:get", key, "-a", "early"]);
    assert_eq!(get("PEM"), "-----BEGIN X-----\nline two\n-----END X-----\n");
    assert_eq!(get("QUOTE"), "say \"hi\"\n");
    assert_eq!(get("PLAIN"), "arg\n");

    // `config:edit` through an editor that changes one var, removes one and adds one;
    // the multi-line value it leaves alone comes back as it was.
    let editor = dir.path().join("editor.sh");
    let edit = |script: &str| {
        std::fs::write(&editor, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let mut cmd = host.command(&["config:edit", "-a", "early"]);
        cmd.env("EDITOR", &editor).env_remove("VISUAL");
        cmd.output().expect("config:edit")
    };
    let out =
        edit(r#"sed -i -e 's/^PLAIN=.*/PLAIN=edited/' -e '/^QUOTE=/d' "$1" && echo NEW=1 >> "$1""#);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Changed NEW, PLAIN, QUOTE and restarted early, v7\n"
    );
    let config = host.ok(&["config", "--json", "-a", "early"]);
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(
        config,
        serde_json::json!({
            "NEW": "1",
            "PEM": "-----BEGIN X-----\nline two\n-----END X-----",
            "PLAIN": "edited",
        })
    );
    // Saved as it was: no release. A line that is no KEY=VALUE: nothing changes, and the
    // edit is kept for another look.
    let out = edit("true");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Nothing changed on early\n"
    );
    let out = edit(r#"echo 'not a var' >> "$1""#);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("nothing changed on early, and the edit is kept in "),
        "{err}"
    );
    let kept = err
        .split("kept in ")
        .nth(1)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .trim();
    assert!(std::fs::read_to_string(kept).unwrap().contains("not a var"));
    std::fs::remove_file(kept).unwrap();
    assert!(
        host.ok(&["releases", "-n", "1", "-a", "early"])
            .contains("v7 ")
    );
}

#[test]
fn push_config_rollback_scale_and_logs() {
    let host = TestHost::start();
    let pushed = host.create_and_push("hello", &sample("hello"));
    assert!(pushed.contains("-----> Released v1"), "{pushed}");
    // The release phase ran before the release went live, its output streamed to push.
    assert!(
        pushed.contains("-----> Running release command `release.wasm` as release."),
        "{pushed}"
    );
    assert!(
        pushed.contains("       release phase: migrations up to date"),
        "{pushed}"
    );
    assert!(
        pushed.contains(&format!(
            "http://hello.localhost:{} deployed",
            host.router_port
        )),
        "{pushed}"
    );
    assert_eq!(host.get("hello", "/"), (200, "Hello from wdeploy\n".into()));
    // An unknown host name is a 404 page, not another app.
    assert_eq!(host.get("nope", "/").0, 404);

    host.ok(&["config:set", "GREETING=config vars", "-a", "hello"]);
    assert_eq!(
        host.get("hello", "/"),
        (200, "Hello from config vars\n".into())
    );
    assert_eq!(
        host.ok(&["config:get", "GREETING", "-a", "hello"]),
        "config vars\n"
    );

    let rolled = host.ok(&["rollback", "v1", "-a", "hello"]);
    assert!(rolled.contains("Rollback to v1"), "{rolled}");
    assert_eq!(host.get("hello", "/"), (200, "Hello from wdeploy\n".into()));
    let releases = host.ok(&["releases", "-a", "hello"]);
    let lines: Vec<&str> = releases.lines().collect();
    assert!(
        lines[1].starts_with("v3")
            && lines[1].contains("Rollback to v1")
            && lines[1].contains("(current)"),
        "{releases}"
    );
    assert!(
        lines[2].starts_with("v2") && lines[2].contains("Set GREETING config vars"),
        "{releases}"
    );
    assert!(
        lines[3].starts_with("v1") && lines[3].contains("Deploy "),
        "{releases}"
    );
    // `releases:info` shows one release as it was released: v2 holds the config var,
    // the newest (v3, a rollback to v1) does not.
    let v2 = host.ok(&["releases:info", "v2", "-a", "hello"]);
    assert!(v2.starts_with("=== hello v2\n"), "{v2}");
    assert!(v2.contains("Change:   Set GREETING config vars"), "{v2}");
    assert!(
        v2.contains("\n=== Procfile\n") && v2.contains("\nweb: web.wasm\n"),
        "{v2}"
    );
    assert!(
        v2.contains("=== v2 Config Vars\nGREETING: config vars\n"),
        "{v2}"
    );
    let newest = host.ok(&["releases:info", "-a", "hello"]);
    assert!(newest.starts_with("=== hello v3 (current)\n"), "{newest}");
    assert!(newest.contains("Status:   succeeded"), "{newest}");
    assert!(!newest.contains("GREETING"), "{newest}");
    for (version, said) in [
        ("v9", "release v9 of hello"),
        ("latest", "not a release version"),
    ] {
        let err = host.fails(&["releases:info", version, "-a", "hello"]);
        assert!(err.contains(said), "{version}: {err}");
    }
    // `--json` gives scripts what the API gives.
    let json = |args: &[&str]| -> serde_json::Value {
        let out = host.ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    };
    let v2 = json(&["releases:info", "v2", "--json", "-a", "hello"]);
    assert_eq!(v2["version"], 2, "{v2}");
    assert_eq!(v2["config"]["GREETING"], "config vars", "{v2}");
    let listed = json(&["releases", "--json", "-a", "hello"]);
    assert_eq!(listed[0]["version"], 3, "{listed}");
    assert_eq!(listed[0]["current"], true, "{listed}");
    assert_eq!(
        json(&["config", "--json", "-a", "hello"]),
        serde_json::json!({})
    );
    let apps = json(&["apps", "--json"]);
    assert_eq!(apps[0]["name"], "hello", "{apps}");
    assert_eq!(
        json(&["apps:info", "--json", "-a", "hello"])["name"],
        "hello"
    );
    let dynos = json(&["ps", "--json", "-a", "hello"]);
    let names: Vec<&str> = dynos
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert!(names.contains(&"web.1"), "{dynos}");
    // `-n` shows the newest N (a page of the host's log, not the whole of it).
    let newest = host.ok(&["releases", "-n", "2", "-a", "hello"]);
    let versions: Vec<&str> = newest
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(versions, ["v3", "v2"], "{newest}");
    // Times read as on Heroku: the date on the reader's clock and how long ago; `--json`
    // keeps RFC 3339 for scripts.
    assert!(
        newest
            .lines()
            .skip(1)
            .all(|l| l.contains(" ago)") || l.contains(" (just now)")),
        "{newest}"
    );
    let since = dynos[0]["since"].as_str().unwrap_or_default();
    assert!(
        chrono::DateTime::parse_from_rfc3339(since).is_ok(),
        "{dynos}"
    );
    // Piped into a reader that is gone (`| head` after its lines), a command ends quietly
    // by SIGPIPE, as `git log` does, instead of panicking on the broken pipe.
    let mut piped = host
        .command(&["releases", "-a", "hello"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn wdeploy");
    drop(piped.stdout.take());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut piped.stderr.take().unwrap(), &mut stderr).unwrap();
    let status = piped.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGPIPE),
        "{status:?} {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let err = host.fails(&["releases", "-n", "0", "-a", "hello"]);
    assert!(err.contains("0 is not in 1..=1000"), "{err}");

    let again = host.push("hello", &sample("hello"));
    assert!(
        again.contains("nothing to upload") && again.contains("(0 bytes)"),
        "{again}"
    );

    // Relative steps count from the formation: 1 + 3 - 1.
    let scaled = host.ok(&["ps:scale", "web+3", "-a", "hello"]);
    assert!(scaled.contains("web=4"), "{scaled}");
    let scaled = host.ok(&["ps:scale", "web-1", "-a", "hello"]);
    assert!(scaled.contains("web=3"), "{scaled}");
    let err = host.fails(&["ps:scale", "web-4", "-a", "hello"]);
    assert!(err.contains("the formation has 3 web dynos"), "{err}");
    // Without a step, the formation.
    assert_eq!(host.ok(&["ps:scale", "-a", "hello"]), "web=3 worker=0\n");
    let ps = host.ok(&["ps", "-a", "hello"]);
    for dyno in ["web.1: up", "web.2: up", "web.3: up"] {
        assert!(ps.contains(dyno), "{ps}");
    }
    // `apps:info` adds the dynos' states, who has access and the add-ons' storage.
    let info = host.ok(&["apps:info", "-a", "hello"]);
    for line in [
        "Dynos:     web: 3 up\n",
        "Access:    admin\n",
        "Add-ons:   0 B of ",
    ] {
        assert!(info.contains(line), "{line} not in:\n{info}");
    }
    for _ in 0..9 {
        assert_eq!(host.get("hello", "/").0, 200);
    }
    let router = host.ok(&["logs", "--source", "router", "-n", "9", "-a", "hello"]);
    for dyno in ["dyno=web.1 ", "dyno=web.2 ", "dyno=web.3 "] {
        assert!(
            router.contains(dyno),
            "no request reached {dyno}:\n{router}"
        );
    }
    // `logs --tail` follows new lines as they happen.
    let tail = Running::spawn(host.command(&[
        "logs", "--tail", "-n", "0", "--source", "router", "-a", "hello",
    ]));
    let seen = poll_until("the tail to show a request to /tailed", SOON, || {
        host.get("hello", "/tailed");
        tail.line_with("path=\"/tailed\"")
            .ok_or_else(|| tail.output())
    });
    assert!(
        seen.contains("wdeploy[router]: at=info") && seen.contains("status=200"),
        "{seen}"
    );
    drop(tail);

    let logs = host.ok(&["logs", "-n", "1500", "-a", "hello"]);
    assert!(logs.contains("app[web.2]: handling / on web.2"), "{logs}");
    assert!(
        logs.contains("wdeploy[api]: Release v2: Set GREETING config vars"),
        "{logs}"
    );
    assert!(
        logs.contains("wdeploy[web.3]: State changed from starting to up"),
        "{logs}"
    );
    assert!(logs.contains("wdeploy[api]: Scaled to web=3"), "{logs}");
    // `--dyno web`: every web dyno's lines, as on Heroku, and nothing else.
    let web = host.ok(&["logs", "--dyno", "web", "-n", "1500", "-a", "hello"]);
    for dyno in ["web.1", "web.2", "web.3"] {
        assert!(
            web.contains(&format!("[{dyno}]: ")),
            "{dyno} not in:\n{web}"
        );
    }
    assert!(
        web.lines()
            .all(|l| l.contains("[web.") && !l.contains("[router]")),
        "{web}"
    );
}

#[test]
fn one_off_dynos_stream_output_and_exit_status() {
    let host = TestHost::start();
    host.create_and_push("faults", faults_app().path());
    let out = host.cli(&["run", "worker", "-a", "faults"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    assert!(text.contains("crasher: giving up"), "{text}");
    // Named as Heroku names them: `run.` and four digits, drawn at random.
    let name = text
        .split_whitespace()
        .find(|w| w.starts_with("run."))
        .unwrap_or_else(|| panic!("no dyno name in {text}"));
    let digits = name.trim_start_matches("run.");
    assert!(
        digits.len() == 4 && digits.bytes().all(|b| b.is_ascii_digit()),
        "{name}"
    );
    let logs = host.ok(&["logs", "--dyno", name, "-a", "faults"]);
    assert!(
        logs.contains(&format!("app[{name}]: crasher: giving up")),
        "{logs}"
    );
    assert!(logs.contains("Process exited with status 1"), "{logs}");
}

#[test]
fn twenty_deploys_under_continuous_load_fail_no_request() {
    let host = TestHost::with_app("hello");
    host.ok(&["ps:scale", "web=2", "-a", "hello"]);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (url, host_header) = (host.url("/"), host.host_header("hello"));
    let load: Vec<_> = (0..2)
        .map(|_| {
            let (stop, url, host_header) = (stop.clone(), url.clone(), host_header.clone());
            std::thread::spawn(move || {
                let agent = http();
                let (mut ok, mut failures) = (0u32, Vec::new());
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match agent.get(&url).header("host", &host_header).call() {
                        Ok(mut r) if r.status() == 200 => {
                            let _ = r.body_mut().read_to_string();
                            ok += 1;
                        }
                        Ok(r) => failures.push(format!("status {}", r.status())),
                        Err(e) => failures.push(e.to_string()),
                    }
                }
                (ok, failures)
            })
        })
        .collect();

    // Each config change is a new release started with preboot.
    for n in 1..=20 {
        host.ok(&[
            "config:set",
            &format!("GREETING=release {n}"),
            "-a",
            "hello",
        ]);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for thread in load {
        let (ok, failures) = thread.join().unwrap();
        assert!(
            failures.is_empty(),
            "{} requests failed: {failures:?}",
            failures.len()
        );
        total += ok;
    }
    assert!(total > 20, "only {total} requests were made");
    assert_eq!(
        host.get("hello", "/"),
        (200, "Hello from release 20\n".into())
    );
}

/// `completions SHELL` prints a script that completes every command, verbs with a colon
/// included, for the shells clap knows; bash loads it as is.
#[test]
fn shell_completions_cover_every_command() {
    let out = wdeploy()
        .args(["completions", "bash"])
        .output()
        .expect("run wdeploy");
    let script = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    for verb in [
        "releases:info",
        "ps:scale",
        "maintenance:on",
        "kv:del",
        "run",
    ] {
        assert!(script.contains(verb), "no {verb} in the bash script");
    }
    let loaded = std::process::Command::new("bash")
        .arg("-c")
        .arg("source /dev/stdin && complete -p wdeploy")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut bash| {
            use std::io::Write;
            bash.stdin.take().unwrap().write_all(script.as_bytes())?;
            bash.wait_with_output()
        })
        .expect("run bash");
    assert!(
        String::from_utf8_lossy(&loaded.stdout).contains("-F _wdeploy wdeploy"),
        "{loaded:?}"
    );
    let wrong = wdeploy()
        .args(["completions", "tcsh"])
        .output()
        .expect("run wdeploy");
    assert!(
        stderr(&wrong).contains("possible values: bash"),
        "{}",
        stderr(&wrong)
    );
}

/// `run -e`: variables for one one-off dyno, over the app's config vars, released nowhere.
#[test]
fn a_one_off_gets_its_own_environment_over_the_config_vars() {
    let host = TestHost::with_app("hello");
    host.ok(&["config:set", "GREETING=from config", "-a", "hello"]);
    let latest = host.ok(&["releases", "--json", "-n", "1", "-a", "hello"]);
    let out = host.ok(&[
        "run",
        "-e",
        "GREETING=from run;EXTRA=1",
        "release",
        "-a",
        "hello",
    ]);
    assert!(
        out.contains("release phase: checking config (GREETING=from run)"),
        "{out}"
    );
    // For that dyno alone: the next one-off has the config var, and nothing was released.
    let out = host.ok(&["run", "release", "-a", "hello"]);
    assert!(
        out.contains("release phase: checking config (GREETING=from config)"),
        "{out}"
    );
    assert_eq!(
        host.ok(&["releases", "--json", "-n", "1", "-a", "hello"]),
        latest
    );
    let err = host.fails(&["run", "-e", "DYNO=web.1", "release", "-a", "hello"]);
    assert!(
        err.contains("DYNO is set by wdeploy for each dyno"),
        "{err}"
    );
    let err = host.fails(&["run", "-e", "1A=x", "release", "-a", "hello"]);
    assert!(err.contains("`1A` is not a valid config var name"), "{err}");
    let err = host.fails(&["run", "-e", "GREETING", "release", "-a", "hello"]);
    assert!(
        err.contains("`GREETING` is not KEY=VALUE (after -e)"),
        "{err}"
    );
    // What cannot run as a one-off says what can.
    let err = host.fails(&["run", "web", "-a", "hello"]);
    assert!(
        err.contains(
            "process type `web` of v2 serves HTTP: a one-off runs a command process type \
             (its commands: release, worker)"
        ),
        "{err}"
    );
    let err = host.fails(&["run", "nosuch", "-a", "hello"]);
    assert!(
        err.contains("v2 has no process type `nosuch` (its commands: release, worker)"),
        "{err}"
    );
}

/// `ps:wait` returns once every dyno runs the current release and is up, as many as the
/// formation asks; a dyno that cannot get there keeps it waiting, until `--timeout`.
#[test]
fn ps_wait_returns_once_every_dyno_runs_the_current_release() {
    let host = TestHost::start();
    host.create_and_push("faults", faults_app().path());
    host.ok(&["ps:scale", "web=2", "-a", "faults"]);
    host.ok(&["config:set", "A=1", "-a", "faults"]);
    let done = host.ok(&["ps:wait", "-a", "faults"]);
    assert_eq!(done, "Every dyno of faults runs v2\n");
    let ps = host.ok(&["ps", "-a", "faults"]);
    for dyno in ["web.1: up", "web.2: up"] {
        assert!(
            ps.lines().any(|l| l.starts_with(dyno) && l.contains(" v2")),
            "{ps}"
        );
    }
    // The worker crashes each time it starts: it is never there.
    host.ok(&["ps:scale", "worker=1", "-a", "faults"]);
    let out = host.cli(&["ps:wait", "--timeout", "2", "-a", "faults"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("Waiting for every dyno of faults to run v2: worker"),
        "{err}"
    );
    assert!(err.contains("error: gave up after 2s: worker"), "{err}");
    // Out of scope, it keeps nothing waiting.
    let done = host.ok(&["ps:wait", "--type", "web", "-a", "faults"]);
    assert_eq!(done, "Every dyno of faults runs v2\n");
    let err = host.fails(&["ps:wait", "-a", "nosuch"]);
    assert!(err.contains("app nosuch not found"), "{err}");
}
