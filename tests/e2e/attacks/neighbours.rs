//! Noisy neighbours: a busy app slows itself, not the apps beside it.

use crate::fixture::*;

/// Two apps busy-looping in four workers each beside a quiet web app (before lanes, eight
/// spinning workers took the quiet app's p50 from 0.8 ms to 563 ms): each app's guests
/// run on threads of their own, and busy apps are confined to the batch cores, so they
/// slow themselves and the quiet app's p99 stays within twice its idle value.
#[test]
fn busy_apps_slow_themselves_not_a_quiet_neighbour() {
    let _alone = alone();
    // The measuring client stands for a remote one: it runs on the cores the host keeps
    // free of busy apps, so it does not compete with the busy guests for a core itself
    // (on this very machine it otherwise waits for the kernel's tick now and then).
    let Some(client_cores) = reserved_cores() else {
        eprintln!("skipped: one core, so no core is kept free of busy apps");
        return;
    };
    let host = TestHost::start();
    // After the host started: it must not inherit the pin.
    pin_this_thread(&client_cores);
    let quiet = faults_app().with_procfile("web: web\n");
    host.create_and_push("quiet", quiet.path());
    let idle = p99_latency(&host, "quiet");

    for busy in ["busy1", "busy2"] {
        let spinners = faults_app().with_procfile("worker: spinner\n");
        host.create_and_push(busy, spinners.path());
        host.ok(&["ps:scale", "worker=4", "-a", busy]);
    }
    for busy in ["busy1", "busy2"] {
        // The governor tells the busy app, in its own log, that it is confined.
        poll_until("four spinning workers, demoted", SOON, || {
            let logs = host.ok(&["logs", "-n", "200", "-a", busy]);
            let spinning = logs.matches("spinner: spinning").count();
            let demoted = logs.contains("wdeploy[scheduler]: Warning: the app's dynos kept");
            (spinning >= 4 && demoted)
                .then_some(())
                .ok_or(format!("{spinning} spinning, demoted: {demoted}"))
        });
    }
    let loaded = p99_latency(&host, "quiet");
    eprintln!("quiet app p99: idle {idle:?}, beside two busy apps {loaded:?}");
    assert!(
        loaded <= idle * 2,
        "the quiet app's p99 went from {idle:?} to {loaded:?} beside two busy apps"
    );
    // The busy apps kept running (they were slowed, not stopped).
    let ps = host.ok(&["ps", "-a", "busy1"]);
    assert_eq!(ps.matches(": up").count(), 4, "{ps}");
}

/// The 99th percentile latency of sequential GETs of APP's `/` over one keep-alive
/// connection: the median of three rounds of 400 (after 50 to warm up), so one stray
/// hiccup of the machine does not decide it.
fn p99_latency(host: &TestHost, app: &str) -> std::time::Duration {
    let agent = http();
    let url = host.url("/");
    let header = host.host_header(app);
    let mut rounds: Vec<std::time::Duration> = (0..3)
        .map(|_| {
            let mut times = Vec::with_capacity(400);
            for i in 0..450 {
                let started = std::time::Instant::now();
                let response = agent
                    .get(&url)
                    .header("host", &header)
                    .call()
                    .unwrap_or_else(|e| panic!("GET {url}: {e}"));
                let elapsed = started.elapsed();
                assert_eq!(response.status().as_u16(), 200);
                if i >= 50 {
                    times.push(elapsed);
                }
            }
            times.sort();
            times[times.len() * 99 / 100]
        })
        .collect();
    rounds.sort();
    rounds[1]
}

/// The cores a host keeps free of busy apps (the first quarter of those this process may
/// use, at least one), as the host computes them; `None` with a single core.
fn reserved_cores() -> Option<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data (zeroed: empty); the size passed is its own.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let got =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    assert_eq!(got, 0, "sched_getaffinity");
    let cores: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        // SAFETY: the index is below CPU_SETSIZE.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect();
    (cores.len() >= 2).then(|| cores[..(cores.len() / 4).max(1)].to_vec())
}

/// Runs the calling thread on `cores` only.
fn pin_this_thread(cores: &[usize]) {
    // SAFETY: as in `reserved_cores`; 0 names the calling thread.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cores {
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    let pinned =
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    assert_eq!(pinned, 0, "sched_setaffinity");
}
