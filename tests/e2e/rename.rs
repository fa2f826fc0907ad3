//! `apps:rename`: an app keeps all it has (releases, config vars, formation, add-on data,
//! domains, access, its log) under a new name and URL; the old name is free at once, and
//! the directory linked to the app follows.

use crate::fixture::*;

#[test]
fn a_renamed_app_keeps_all_it_has_under_its_new_name() {
    let mut host = TestHost::start();
    let dir = tempfile::tempdir().unwrap();
    let linked = |args: &[&str]| {
        let out = host
            .command(args)
            .current_dir(dir.path())
            .output()
            .expect("run wdeploy");
        assert!(out.status.success(), "wdeploy {args:?}: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    linked(&["apps:create", "old-name"]);
    host.push("old-name", faults_app().with_procfile("web: web\n").path());
    host.ok(&["config:set", "GREETING=kept", "-a", "old-name"]);
    host.ok(&["ps:scale", "web=2", "-a", "old-name"]);
    host.ok(&["kv:set", "visits", "41", "-a", "old-name"]);
    host.ok(&["domains:add", "www.example.com", "-a", "old-name"]);
    host.ok(&["users:add", "bob@example.com"]);
    host.ok(&["access:add", "bob@example.com", "-a", "old-name"]);
    let releases = host.ok(&["releases", "-a", "old-name"]);

    // Renamed from the linked directory, without -a.
    let said = linked(&["apps:rename", "new-name"]);
    assert!(
        said.starts_with("Renamed old-name to new-name | http://new-name.localhost:"),
        "{said}"
    );
    assert!(said.contains("Linked"), "{said}");
    let link = std::fs::read_to_string(dir.path().join(".wdeploy")).unwrap();
    assert!(link.contains("app = \"new-name\""), "{link}");
    assert!(linked(&["apps:info"]).starts_with("=== new-name"));

    // Served under the new name as soon as the call returns; the old name is no app.
    assert_eq!(
        host.get("new-name", "/env?name=GREETING"),
        (200, "kept\n".into())
    );
    let (status, body) = host.get("old-name", "/");
    assert_eq!(status, 404, "{body}");
    let err = host.fails(&["config", "-a", "old-name"]);
    assert!(err.contains("app old-name not found"), "{err}");
    // Everything came along: releases (no new one), formation, add-on data, domains,
    // access, and the log so far.
    assert_eq!(
        host.ok(&["releases", "-a", "new-name"]),
        releases.replace("old-name", "new-name")
    );
    poll_until("both web dynos up again", SOON, || {
        let ps = host.ok(&["ps", "-a", "new-name"]);
        (ps.matches(": up ").count() == 2).then_some(())
    });
    assert_eq!(
        host.ok(&["kv:get", "visits", "-a", "new-name"]).trim(),
        "41"
    );
    assert!(
        host.ok(&["domains", "-a", "new-name"])
            .contains("www.example.com")
    );
    assert!(
        host.ok(&["access", "-a", "new-name"])
            .contains("bob@example.com")
    );
    let log = host.ok(&["logs", "-a", "new-name", "-n", "1500"]);
    for line in [
        "Set GREETING config vars by admin",
        "Renamed from old-name to new-name by admin",
    ] {
        assert!(log.contains(line), "{line} not in:\n{log}");
    }
    let apps = host.ok(&["apps"]);
    assert!(
        apps.contains("new-name") && !apps.contains("old-name"),
        "{apps}"
    );

    // Refused, with nothing changed: a taken name, a name that is no name, its own name,
    // an app that does not exist.
    host.ok(&["apps:create", "taken", "--no-link"]);
    let err = host.fails(&["apps:rename", "taken", "-a", "new-name"]);
    assert!(err.contains("app taken already exists"), "{err}");
    let err = host.fails(&["apps:rename", "Not_A_Name", "-a", "new-name"]);
    assert!(err.contains("not a valid app name"), "{err}");
    let err = host.fails(&["apps:rename", "new-name", "-a", "new-name"]);
    assert!(err.contains("already called new-name"), "{err}");
    let err = host.fails(&["apps:rename", "other", "-a", "ghost"]);
    assert!(err.contains("app ghost not found"), "{err}");

    // The old name is free for a new app, which starts empty.
    host.ok(&["apps:create", "old-name", "--no-link"]);
    let err = host.fails(&["kv:get", "visits", "-a", "old-name"]);
    assert!(err.contains("key `visits` not found"), "{err}");

    // A restarted host runs it under its new name.
    host.restart();
    poll_until("the renamed app restored", SOON, || {
        match host.get("new-name", "/env?name=GREETING") {
            (200, body) if body == "kept\n" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
}
