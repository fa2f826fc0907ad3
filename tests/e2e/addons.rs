//! Add-ons (key-value, queues) through the samples that use them: exact across dynos,
//! durable across restarts, one app's data never another's; the same in `dev`.

use crate::fixture::*;

#[test]
fn the_counter_is_exact_across_three_dynos_survives_restarts_and_apps_never_share_keys() {
    let mut host = TestHost::with_app("counter");
    host.ok(&["ps:scale", "web=3", "-a", "counter"]);

    // N requests at once (20 clients), spread over the three dynos.
    const CLIENTS: u64 = 20;
    const EACH: u64 = 10;
    let (url, header) = (host.url("/"), host.host_header("counter"));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (url, header) = (url.clone(), header.clone());
            std::thread::spawn(move || {
                let agent = http();
                (0..EACH)
                    .map(|_| {
                        let mut r = agent.get(&url).header("host", &header).call().unwrap();
                        let body = r.body_mut().read_to_string().unwrap();
                        assert_eq!(r.status().as_u16(), 200, "{body}");
                        body.trim().parse::<u64>().unwrap()
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut counts: Vec<u64> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    counts.sort();
    // Every increment was atomic: each request saw its own count, none was lost.
    assert_eq!(counts, (1..=CLIENTS * EACH).collect::<Vec<_>>());
    let total = format!("{}\n", CLIENTS * EACH);
    assert_eq!(host.get("counter", "/count"), (200, total.clone()));
    let router = host.ok(&["logs", "--source", "router", "-n", "200", "-a", "counter"]);
    for dyno in ["dyno=web.1 ", "dyno=web.2 ", "dyno=web.3 "] {
        assert!(router.contains(dyno), "no request reached {dyno}");
    }
    assert_eq!(host.ok(&["kv:get", "hits", "-a", "counter"]), total);

    // The count is the app's, not the dynos': it survives a restart and a host restart
    // (after kill -9).
    host.ok(&["restart", "-a", "counter"]);
    assert_eq!(host.get("counter", "/count"), (200, total.clone()));
    host.kill_9();
    host.restart();
    assert_eq!(host.wait_restored("counter", "/count"), (200, total));
    assert_eq!(
        host.get("counter", "/"),
        (200, format!("{}\n", CLIENTS * EACH + 1))
    );

    // Another app with the same key names sees only its own data, over HTTP and kv:*.
    host.create_and_push("other", &sample("counter"));
    assert_eq!(host.get("other", "/count"), (200, "0\n".into()));
    assert_eq!(host.get("other", "/"), (200, "1\n".into()));
    host.ok(&["kv:set", "hits", "1000", "-a", "other"]);
    assert_eq!(host.get("other", "/"), (200, "1001\n".into()));
    assert_eq!(
        host.get("counter", "/count"),
        (200, format!("{}\n", CLIENTS * EACH + 1))
    );
    assert_eq!(host.ok(&["kv:get", "hits", "-a", "other"]), "1001\n");
    assert_eq!(host.ok(&["kv:keys", "-a", "other"]), "hits\n");
    let err = host.fails(&["kv:get", "visits", "-a", "other"]);
    assert!(
        err.contains("key `visits` not found in bucket default of other"),
        "{err}"
    );
    // A key deleted by hand is gone for the app too; a mistyped one is said.
    let said = host.ok(&["kv:del", "hits", "-a", "other"]);
    assert_eq!(said, "Deleted hits from bucket default of other\n");
    assert_eq!(host.get("other", "/count"), (200, "0\n".into()));
    let err = host.fails(&["kv:del", "hits", "-a", "other"]);
    assert!(
        err.contains("key `hits` not found in bucket default of other"),
        "{err}"
    );
    assert_eq!(
        host.get("counter", "/count"),
        (200, format!("{}\n", CLIENTS * EACH + 1)),
        "the other app's key of the same name stays"
    );
    // Limits are clear errors.
    let out = host.cli(&["kv:set", &"k".repeat(1025), "v", "-a", "other"]);
    assert!(
        stderr(&out).contains("key of 1025 bytes is over the limit of 1024 bytes"),
        "{}",
        stderr(&out)
    );
    // A destroyed app's data goes with it.
    host.ok(&["apps:destroy", "other", "--confirm", "other"]);
    host.ok(&["apps:create", "other", "--no-link"]);
    let none = host.cli(&["kv:keys", "-a", "other"]);
    assert!(none.status.success() && none.stdout.is_empty(), "{none:?}");
    assert_eq!(stderr(&none), "No keys in bucket default of other\n");
}

#[test]
fn jobs_are_processed_once_and_again_after_a_worker_crashes_mid_job() {
    let host = TestHost::with_app("jobs");
    host.ok(&["ps:scale", "worker=2", "-a", "jobs"]);
    // Waits until job ID's status page reads `expected`.
    let until_done = |id: u64, expected: &str| {
        poll_until(&format!("job {id} to be `{expected}`"), SOON, || {
            let (status, body) = host.get("jobs", &format!("/jobs/{id}"));
            if body == expected {
                Ok(())
            } else {
                Err(format!("{status} {body}"))
            }
        })
    };

    // Two workers compete for 20 jobs: each is done, by exactly one run.
    let ids: Vec<(u64, String)> = (0..20)
        .map(|n| {
            let text = format!("job number {n}");
            let (status, body) = host.post("jobs", "/jobs", &text);
            assert_eq!(status, 202, "{body}");
            (body.trim().parse().unwrap(), text)
        })
        .collect();
    for (id, text) in &ids {
        until_done(*id, &format!("done: {}\n", text.to_uppercase()));
    }
    for (id, _) in &ids {
        let key = format!("job/{id}/runs");
        assert_eq!(host.ok(&["kv:get", &key, "-a", "jobs"]), "1\n", "{key}");
    }
    let stats = host.ok(&["queue:stats", "-a", "jobs"]);
    let row: Vec<&str> = stats.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row, ["jobs", "0", "0", "20"], "{stats}");

    // A payload over the queue's limit is an error value the guest answers with.
    let (status, body) = host.post("jobs", "/jobs", &"x".repeat(300 << 10));
    assert_eq!(
        (status, body.as_str()),
        (
            413,
            "job refused: payload of 307200 bytes is over the limit of 262144 bytes\n"
        )
    );

    // A worker that dies mid-job never acks; the job comes back when its lease expires.
    host.ok(&["config:set", "JOB_LEASE_SECONDS=2", "-a", "jobs"]);
    let (status, body) = host.post("jobs", "/jobs", "crash-once");
    assert_eq!(status, 202, "{body}");
    let id: u64 = body.trim().parse().unwrap();
    until_done(id, "done: CRASH-ONCE\n");
    for (what, value) in [("runs", "2\n"), ("attempt", "2\n"), ("crashed", "yes\n")] {
        let key = format!("job/{id}/{what}");
        assert_eq!(host.ok(&["kv:get", &key, "-a", "jobs"]), value, "{key}");
    }
    let logs = host.ok(&["logs", "-n", "1500", "-a", "jobs"]);
    assert!(
        logs.contains(&format!("job {id}: crashing on purpose")),
        "{logs}"
    );
    assert!(logs.contains("Process crashed"), "{logs}");
    assert!(
        logs.contains(&format!("job {id}: attempt 2: crash-once")),
        "{logs}"
    );
    let stats = host.ok(&["queue:stats", "-a", "jobs"]);
    assert!(stats.lines().nth(1).unwrap().ends_with(" 21"), "{stats}");
}

#[test]
fn add_ons_work_in_dev_and_keep_their_data_between_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let env = write_env(tmp.path(), "JOB_LEASE_SECONDS=5\n");
    let args = [
        "--env-file",
        env.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ];
    let wait_done = |base: &str, id: &str, expected: &str| {
        poll_until(&format!("job {id} to be `{expected}`"), SOON, || {
            let (status, body) = get(&format!("{base}/jobs/{id}"));
            if body == expected {
                Ok(())
            } else {
                Err(format!("{status} {body}"))
            }
        })
    };

    let mut first = dev(&sample("jobs"), &tmp.path().join("run1"), &args);
    let base = format!("http://127.0.0.1:{}", first.port());
    let (status, id) = post(&format!("{base}/jobs"), "hello from dev");
    assert_eq!(status, 202, "{id}");
    wait_done(&base, id.trim(), "done: HELLO FROM DEV\n");
    // The worker read its lease from the config vars through wasi:config.
    first.wait_for_text("worker: taking jobs from `jobs` with a 5s lease", SOON);
    assert!(first.interrupt(SOON).success(), "{}", first.output());

    // A new run finds the job and its result where the first left them.
    let mut second = dev(&sample("jobs"), &tmp.path().join("run2"), &args);
    let base = format!("http://127.0.0.1:{}", second.port());
    wait_done(&base, id.trim(), "done: HELLO FROM DEV\n");
    let (status, next) = post(&format!("{base}/jobs"), "again");
    assert_eq!(status, 202, "{next}");
    assert!(next.trim().parse::<u64>().unwrap() > id.trim().parse::<u64>().unwrap());
    wait_done(&base, next.trim(), "done: AGAIN\n");
    assert!(second.interrupt(SOON).success(), "{}", second.output());
}
