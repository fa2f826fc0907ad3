//! The host's metrics as a scraper and the dashboard read them: `/metrics` in the
//! Prometheus text format (behind the API's token, or on `--metrics ADDR` without one),
//! an app's last hour (`GET /apps/APP/metrics`), and `wdeploy open`.

use crate::fixture::*;
use prometheus_parse::{Scrape, Value};
use wdeploy_api::wire::MetricsHistory;

/// `GET url` with `token` (if any): status and body.
fn get_with(url: &str, token: Option<&str>) -> (u16, String) {
    let mut request = http().get(url);
    if let Some(token) = token {
        request = request.header("authorization", &format!("Bearer {token}"));
    }
    let mut response = request.call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    (
        status,
        response.body_mut().read_to_string().unwrap_or_default(),
    )
}

/// Parses `/metrics` the way Prometheus's text parser does.
fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|line| Ok(line.to_string()))).expect("Prometheus text")
}

/// The value of the sample of `metric` whose labels include `labels`.
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .find(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .and_then(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(*v),
            Value::Histogram(buckets) => buckets
                .iter()
                .find(|b| b.less_than == f64::INFINITY)
                .map(|b| b.count),
            Value::Summary(_) => None,
        })
}

/// 97 good requests and 3 that trap are counted as such, per app, by status class and
/// router code, with their latency; the dynos, the pool and the uptime are there; a
/// wrong token gets a 401; `--metrics` serves the same without a token; the app's last
/// hour shows the traffic; a destroyed app's series go.
#[test]
fn metrics_count_what_the_router_answered() {
    let host = TestHost::start_with(&["--metrics", "127.0.0.1:0"]);
    host.create_and_push("faults", faults_app().with_procfile("web: web\n").path());
    // The traps first, so a warm instance is left (each trap discards its instance).
    for _ in 0..3 {
        assert_eq!(host.get("faults", "/trap").0, 500);
    }
    for _ in 0..97 {
        assert_eq!(host.get("faults", "/").0, 200);
    }
    let api_metrics = format!("{}/metrics", host.api);
    // A router line (and its counts) is written once the response body has been sent.
    let scrape = poll_until("the 100 requests counted", SOON, || {
        let (status, text) = get_with(&api_metrics, Some(&host.token));
        assert_eq!(status, 200, "{text}");
        let scrape = parse(&text);
        let count = value(
            &scrape,
            "wdeploy_router_request_duration_seconds",
            &[("app", "faults")],
        );
        if count == Some(100.0) {
            Ok(scrape)
        } else {
            Err(format!("histogram count {count:?}:\n{text}"))
        }
    });
    let faults = [("app", "faults")];
    let with = |extra: (&'static str, &'static str)| [faults[0], extra];
    let requests = "wdeploy_router_requests_total";
    assert_eq!(
        value(&scrape, requests, &with(("status_class", "2xx"))),
        Some(97.0)
    );
    assert_eq!(
        value(&scrape, requests, &with(("status_class", "5xx"))),
        Some(3.0)
    );
    let errors = "wdeploy_router_errors_total";
    assert_eq!(value(&scrape, errors, &with(("code", "H13"))), Some(3.0));
    assert_eq!(
        value(
            &scrape,
            "wdeploy_app_crashes_total",
            &with(("process_type", "web"))
        ),
        Some(3.0),
        "each trap crashed an instance"
    );
    let web_up = [faults[0], ("process_type", "web"), ("state", "up")];
    assert_eq!(value(&scrape, "wdeploy_app_dynos", &web_up), Some(1.0));
    assert_eq!(value(&scrape, "wdeploy_app_releases", &faults), Some(1.0));
    let instances = value(&scrape, "wdeploy_app_instances", &faults).expect("instances");
    assert!(instances >= 1.0, "a warm instance: {instances}");
    let memory = value(&scrape, "wdeploy_app_memory_bytes", &faults).expect("memory");
    assert!(memory > 0.0, "its linear memory: {memory}");
    let largest = value(&scrape, "wdeploy_app_instance_memory_max_bytes", &faults);
    assert!(
        largest.is_some_and(|l| l > 0.0 && l <= memory),
        "{largest:?}"
    );
    let used = value(&scrape, "wdeploy_instance_pool_slots", &[("state", "used")]);
    let free = value(&scrape, "wdeploy_instance_pool_slots", &[("state", "free")]);
    assert_eq!(
        used.zip(free).map(|(u, f)| u + f),
        Some(10_000.0),
        "the pool of --max-instances"
    );
    let misses = value(&scrape, "wdeploy_compile_cache_misses_total", &[]);
    assert!(
        misses.is_some_and(|m| m >= 1.0),
        "compiled once: {misses:?}"
    );
    let uptime = value(&scrape, "wdeploy_uptime_seconds", &[]).expect("uptime");
    assert!(uptime > 0.0);

    // The API's token guards it like every route.
    assert_eq!(get_with(&api_metrics, Some("wrong-token")).0, 401);
    assert_eq!(get_with(&api_metrics, None).0, 401);

    // The listener of --metrics serves it without a token, and nothing else.
    let port = host.metrics_port();
    let (status, text) = get_with(&format!("http://127.0.0.1:{port}/metrics"), None);
    assert_eq!(status, 200);
    let open_scrape = parse(&text);
    assert_eq!(
        value(&open_scrape, requests, &with(("status_class", "2xx"))),
        Some(97.0)
    );
    assert_eq!(
        get_with(&format!("http://127.0.0.1:{port}/apps"), Some(&host.token)).0,
        404,
        "no API route on the metrics listener"
    );

    // The dashboard's series: a sample every 10 s from the same counts.
    let history = poll_until("a sample of the app's traffic", SOON, || {
        let (status, body) = get_with(
            &format!("{}/apps/faults/metrics", host.api),
            Some(&host.token),
        );
        assert_eq!(status, 200, "{body}");
        let history: MetricsHistory = serde_json::from_str(&body).expect("JSON");
        // The 100 requests may straddle two intervals.
        let requests: u64 = history.samples.iter().map(|s| s.requests).sum();
        if requests == 100 {
            Ok(history)
        } else {
            Err(body)
        }
    });
    assert_eq!(history.interval_seconds, 10);
    let errors: u64 = history.samples.iter().map(|s| s.errors).sum();
    assert_eq!(errors, 3, "{history:?}");
    let busy: Vec<_> = history.samples.iter().filter(|s| s.requests > 0).collect();
    for sample in &busy {
        assert!(sample.requests_per_second > 0.0, "{sample:?}");
        let (p50, p99) = (sample.p50_seconds.unwrap(), sample.p99_seconds.unwrap());
        assert!(p50 > 0.0 && p50 <= p99, "{sample:?}");
    }
    let last = busy.last().expect("a busy sample");
    assert!(
        last.memory_bytes > 0,
        "the warm instance's memory: {last:?}"
    );
    let unknown = get_with(
        &format!("{}/apps/nosuchapp/metrics", host.api),
        Some(&host.token),
    );
    assert_eq!(unknown.0, 404, "{}", unknown.1);

    // A restart is counted per process type.
    host.ok(&["restart", "-a", "faults"]);
    let (_, text) = get_with(&api_metrics, Some(&host.token));
    let restarts = value(
        &parse(&text),
        "wdeploy_app_restarts_total",
        &with(("process_type", "web")),
    );
    assert_eq!(restarts, Some(1.0), "{text}");

    // A destroyed app's series go.
    host.ok(&["apps:destroy", "faults", "--confirm", "faults"]);
    let (_, text) = get_with(&api_metrics, Some(&host.token));
    assert!(!text.contains("app=\"faults\""), "{text}");
}

/// `wdeploy open` prints the app's URL, which answers through the router; on a desktop
/// it also hands the URL to `xdg-open` (here a stand-in that writes down what it got,
/// this machine having no browser), and a desktop without one is no error.
#[test]
fn open_prints_the_url_and_opens_it_on_a_desktop() {
    let host = TestHost::start();
    host.create_and_push("opened", faults_app().with_procfile("web: web\n").path());
    let out = host
        .command(&["open", "-a", "opened"])
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .expect("run wdeploy open");
    assert!(out.status.success(), "{}", stderr(&out));
    let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(url, format!("http://opened.localhost:{}", host.router_port));
    // The URL's host name and port, at the router (names under .localhost are
    // loopback, RFC 6761, whether or not this machine's resolver says so).
    let authority = url.strip_prefix("http://").expect("http URL");
    let mut response = http()
        .get(&host.url("/"))
        .header("host", authority)
        .call()
        .expect("GET the app's URL");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.body_mut().read_to_string().unwrap(), "ok\n");

    // A desktop: the URL goes to xdg-open.
    let desktop = tempfile::tempdir().expect("tempdir");
    let opened = desktop.path().join("opened");
    let opener = desktop.path().join("xdg-open");
    std::fs::write(
        &opener,
        format!("#!/bin/sh\nprintf '%s' \"$1\" > {}\n", opened.display()),
    )
    .expect("write xdg-open");
    let mut mode = std::fs::metadata(&opener).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut mode, 0o755);
    std::fs::set_permissions(&opener, mode).unwrap();
    let path = format!(
        "{}:{}",
        desktop.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = host
        .command(&["open", "-a", "opened"])
        .env("DISPLAY", ":0")
        .env("PATH", &path)
        .output()
        .expect("run wdeploy open");
    assert!(out.status.success(), "{}", stderr(&out));
    let handed = poll_until("xdg-open to get the URL", SOON, || {
        std::fs::read_to_string(&opened)
            .ok()
            .filter(|u| !u.is_empty())
    });
    assert_eq!(handed, url);

    // A desktop without xdg-open: the URL is printed all the same.
    let out = host
        .command(&["open", "-a", "opened"])
        .env("DISPLAY", ":0")
        .env("PATH", "/nonexistent")
        .output()
        .expect("run wdeploy open");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), url);
}
