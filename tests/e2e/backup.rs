//! `wdeploy backup`: a copy of a host's data directory taken while it serves, restored by
//! a host started on it, with what the host had at that moment and nothing after.

use crate::fixture::*;
use std::sync::atomic::{AtomicBool, Ordering};

#[test]
fn a_backup_taken_while_the_host_serves_restores_it_on_another_host() {
    let host = TestHost::start();
    let app = faults_app().with_procfile("web: web\n");
    host.create_and_push("shop", app.path());
    host.ok(&["config:set", "GREETING=hi", "-a", "shop"]);
    host.ok(&["kv:set", "visits", "41", "-a", "shop"]);

    // Requests and add-on writes go on while the backup is taken.
    let stop = AtomicBool::new(false);
    let dest = tempfile::tempdir().unwrap();
    let out = std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                assert_eq!(host.get("shop", "/").0, 200);
                host.ok(&["kv:set", "other", "x", "-a", "shop"]);
            }
        });
        let out = wdeploy()
            .args(["backup", "--data", host.data().to_str().unwrap()])
            .args(["--to", dest.path().to_str().unwrap()])
            .output()
            .expect("run wdeploy backup");
        stop.store(true, Ordering::Relaxed);
        out
    });
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}{}", stderr(&out));
    assert!(said.contains("Backed up 1 app and "), "{said}");
    let again = wdeploy()
        .args(["backup", "--data", host.data().to_str().unwrap()])
        .args(["--to", dest.path().to_str().unwrap()])
        .output()
        .expect("run wdeploy backup");
    assert!(!again.status.success());
    assert!(stderr(&again).contains("is not empty: back up into a new directory"));

    // What changes after the backup is not in it.
    host.ok(&["config:set", "GREETING=later", "-a", "shop"]);
    let restored = TestHost::start_on(dest, &host.token);
    poll_until("the restored host serves", BUILD, || {
        match restored.get("shop", "/env?name=GREETING") {
            (200, body) if body == "hi\n" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    assert_eq!(restored.ok(&["kv:get", "visits", "-a", "shop"]), "41\n");
    let releases = restored.ok(&["releases", "-a", "shop"]);
    assert!(
        releases.contains("v2") && !releases.contains("v3"),
        "{releases}"
    );
    // The original goes on, on its own.
    assert_eq!(
        host.get("shop", "/env?name=GREETING"),
        (200, "later\n".to_string())
    );
}
