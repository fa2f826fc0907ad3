//! Per-app budgets a tenant cannot exceed at its neighbours' expense (issue 12): add-on
//! storage (`limits.addons_mb` under the host's `--max-addons-mb`), add-on data that a new
//! app of a destroyed app's name never inherits, config vars (32 KiB an app).

use crate::fixture::*;
use std::path::Path;
use std::time::Instant;

/// Bytes of the add-ons database on disk, with its write-ahead log.
fn addons_db_bytes(data: &Path) -> u64 {
    ["addons.db", "addons.db-wal"]
        .iter()
        .map(|f| std::fs::metadata(data.join(f)).map_or(0, |m| m.len()))
        .sum()
}

/// The reproduction: unauthenticated `POST /jobs` to the jobs sample grew
/// `addons.db` without bound. Capped at 1 MB by the host, the app gets errors naming the
/// quota once it is full, its log one R18 line, and the database stops growing; its
/// neighbour's writes still succeed, and a new app of its name starts empty.
#[test]
fn an_app_filling_its_add_on_storage_gets_errors_and_its_neighbour_does_not() {
    const QUOTA_MB: u64 = 1;
    let host = TestHost::start_with(&["--max-addons-mb", &QUOTA_MB.to_string()]);
    host.create_and_push("filler", &sample("jobs"));
    host.create_and_push("neighbour", &sample("jobs"));
    let before = addons_db_bytes(host.data());

    // 200 KB jobs (under the 256 KiB payload limit), no worker taking them: 40 of them
    // would be 8 MB.
    let payload = "x".repeat(200 << 10);
    let started = Instant::now();
    let (mut accepted, mut refused) = (0, 0);
    let mut first_job = None;
    for _ in 0..40 {
        let (status, body) = host.post("filler", "/jobs", &payload);
        match status {
            202 => {
                accepted += 1;
                first_job.get_or_insert(body.trim().to_string());
            }
            _ => {
                // The sample answers the queue's `invalid` error value with a 413.
                assert_eq!(status, 413, "{body}");
                assert!(
                    body.starts_with("job refused: add-on storage quota exceeded")
                        && body.contains("limits.addons_mb"),
                    "{body}"
                );
                refused += 1;
            }
        }
    }
    let elapsed = started.elapsed();
    // Five jobs and their `queued` keys fit in 1 MiB, a sixth does not.
    assert_eq!(accepted, 5, "jobs of 200 KB accepted under a 1 MB quota");
    assert_eq!(refused, 40 - accepted);
    let grown = addons_db_bytes(host.data()).saturating_sub(before);
    // The data (1 MB) is written to the log and then to the database: twice the quota,
    // plus SQLite's pages and slack, is far below the 8 MB posted.
    assert!(
        grown <= 2 * (QUOTA_MB << 20) + (1 << 20),
        "addons.db grew by {grown} bytes under a {QUOTA_MB} MB quota"
    );

    // The app's log says so, Heroku style, not once per refused write.
    let logs = host.ok(&["logs", "-n", "1500", "-a", "filler"]);
    let notices = logs
        .lines()
        .filter(|l| l.contains("Error R18 (Add-on storage quota exceeded)"))
        .count();
    assert!(
        (1..=1 + elapsed.as_secs() as usize / 10).contains(&notices),
        "{notices} R18 lines in {elapsed:?}:\n{logs}"
    );
    assert!(logs.contains("wdeploy[addons]: Error R18"), "{logs}");
    // `addons` shows the app near its quota, and its queue with the five jobs waiting.
    let addons = host.ok(&["addons", "-a", "filler"]);
    assert!(addons.contains(" of 1.0 MiB ("), "{addons}");
    let share: f64 = addons
        .split_once(" MiB (")
        .and_then(|(_, rest)| rest.split_once(" %)"))
        .and_then(|(share, _)| share.parse().ok())
        .unwrap_or_else(|| panic!("no share in {addons}"));
    assert!((90.0..=100.0).contains(&share), "{addons}");
    assert!(addons.contains("(5 ready, 0 leased)"), "{addons}");

    // The neighbour, under the same ceiling, is untouched.
    let (status, body) = host.post("neighbour", "/jobs", "hello");
    assert_eq!(status, 202, "{body}");
    let id = body.trim();
    assert_eq!(
        host.get("neighbour", &format!("/jobs/{id}")),
        (200, "queued\n".into())
    );
    let neighbour_logs = host.ok(&["logs", "-n", "1500", "-a", "neighbour"]);
    assert!(!neighbour_logs.contains("R18"), "{neighbour_logs}");

    // The operator's writes count against the same quota.
    let err = host.fails(&["kv:set", "big", &"y".repeat(100 << 10), "-a", "filler"]);
    assert!(err.contains("add-on storage quota exceeded"), "{err}");

    // Destroyed, its data goes; a new app of the same name is someone else, with nothing
    // of the old one's and the whole quota.
    host.ok(&["apps:destroy", "filler", "--confirm", "filler"]);
    host.create_and_push("filler", &sample("jobs"));
    assert_eq!(host.ok(&["kv:keys", "-a", "filler"]), "");
    let stats = host.ok(&["queue:stats", "-a", "filler"]);
    assert!(stats.contains("No queues on filler"), "{stats}");
    let old_job = first_job.expect("a job was accepted");
    assert_eq!(
        host.get("filler", &format!("/jobs/{old_job}")),
        (404, "no such job\n".into()),
        "the new app sees a job of the old one"
    );
    for _ in 0..5 {
        let (status, body) = host.post("filler", "/jobs", &payload);
        assert_eq!(status, 202, "{body}");
    }
}

/// Config vars are kept whole in every release and given to every instance: an app may
/// hold 32 KiB of them. A change past that is refused and changes nothing; removing
/// them still works.
#[test]
fn config_vars_past_32_kib_are_refused_and_change_nothing() {
    let host = TestHost::start();
    host.ok(&["apps:create", "roomy", "--no-link"]);
    let value = "x".repeat(20 << 10);
    host.ok(&["config:set", &format!("FIRST={value}"), "-a", "roomy"]);
    let err = host.fails(&["config:set", &format!("SECOND={value}"), "-a", "roomy"]);
    assert!(
        err.contains("would hold 41 KiB; an app may have at most 32 KiB"),
        "{err}"
    );
    assert!(err.contains("wdeploy kv:set"), "{err}");
    let releases = host.ok(&["releases", "-a", "roomy"]);
    assert_eq!(
        releases.lines().filter(|l| l.starts_with('v')).count(),
        1,
        "{releases}"
    );
    let config = host.ok(&["config", "-a", "roomy", "--json"]);
    assert!(
        config.contains("FIRST") && !config.contains("SECOND"),
        "{config}"
    );

    // Swapping the value for another of the same size, or removing it, is allowed.
    let other = "y".repeat(20 << 10);
    host.ok(&["config:set", &format!("FIRST={other}"), "-a", "roomy"]);
    host.ok(&["config:unset", "FIRST", "-a", "roomy"]);
    host.ok(&["config:set", &format!("SECOND={value}"), "-a", "roomy"]);
}

/// A person's API calls and the apps they create have budgets of their own: past either,
/// they are refused with what the limit is, while another person (and the admin, who runs
/// the host) goes on as before.
#[test]
fn a_person_past_their_api_rate_or_app_count_is_refused_and_others_are_not() {
    let host = TestHost::start_with(&[
        "--api-rate",
        "1",
        "--api-burst",
        "20",
        "--max-apps-per-person",
        "2",
    ]);
    let bob = crate::people::add_user(&host, "bob@example.com");
    let carol = crate::people::add_user(&host, "carol@example.com");
    let as_bob = |args: &[&str]| host.cli_with_token(&bob, args);

    // Apps: two, then a refusal that says why; one destroyed makes room again.
    for app in ["bob-one", "bob-two"] {
        let out = as_bob(&["apps:create", app, "--no-link"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let out = as_bob(&["apps:create", "bob-three", "--no-link"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("bob@example.com has access to 2 apps")
            && stderr(&out).contains("--max-apps-per-person"),
        "{}",
        stderr(&out)
    );
    for app in ["admin-one", "admin-two", "admin-three"] {
        host.ok(&["apps:create", app, "--no-link"]);
    }
    let out = as_bob(&["apps:destroy", "bob-one", "--confirm", "bob-one"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = as_bob(&["apps:create", "bob-three", "--no-link"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Calls: bob's burst runs out and he gets 429s naming the rate.
    let call = |token: &str| {
        let mut response = http()
            .get(&format!("{}/apps", host.api))
            .header("authorization", &format!("Bearer {token}"))
            .call()
            .expect("GET /apps");
        let status = response.status().as_u16();
        (
            status,
            response.body_mut().read_to_string().unwrap_or_default(),
        )
    };
    let refused = (0..40)
        .map(|_| call(&bob))
        .find(|(status, _)| *status == 429)
        .expect("bob's calls past his burst are refused");
    assert!(
        refused
            .1
            .contains("too many API calls from bob@example.com")
            && refused.1.contains("--api-rate"),
        "{}",
        refused.1
    );
    let out = as_bob(&["apps"]);
    assert!(
        stderr(&out).contains("too many API calls"),
        "{}",
        stderr(&out)
    );
    // Carol and the admin are not held back by bob's calls.
    for _ in 0..10 {
        assert_eq!(call(&carol).0, 200);
        assert_eq!(call(&host.token).0, 200);
    }
    // Bob's rate gives him calls back as time passes.
    poll_until("bob's next call at his rate", SOON, || match call(&bob) {
        (200, _) => Ok(()),
        (status, body) => Err(format!("{status} {body}")),
    });
}
