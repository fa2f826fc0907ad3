//! Maintenance mode: `maintenance:on` makes the router answer the app's requests with a
//! 503 maintenance page while its dynos keep running, across a restart of the host, and
//! `maintenance:off` serves them again; both are in the app's log.

use crate::fixture::*;

#[test]
fn maintenance_mode_answers_503_keeps_the_dynos_and_lasts_until_turned_off() {
    let mut host = TestHost::with_app("hello");
    assert_eq!(host.get("hello", "/").0, 200);
    assert_eq!(host.ok(&["maintenance", "-a", "hello"]).trim(), "off");

    let releases = host.ok(&["releases", "-a", "hello"]);
    let said = host.ok(&["maintenance:on", "-a", "hello"]);
    assert!(said.contains("Maintenance mode on for hello"), "{said}");
    let page = |host: &TestHost| {
        let mut response = http()
            .get(&host.url("/"))
            .header("host", &host.host_header("hello"))
            .call()
            .unwrap();
        let header = |name: &str| {
            let value = response.headers().get(name).map(|v| v.to_str().unwrap());
            value.unwrap_or_default().to_string()
        };
        let (kind, id) = (header("content-type"), header("x-request-id"));
        let body = response.body_mut().read_to_string().unwrap();
        (response.status().as_u16(), kind, id, body)
    };
    let (status, kind, id, body) = page(&host);
    assert_eq!(status, 503, "{body}");
    assert!(kind.starts_with("text/html"), "{kind}");
    assert!(body.contains("Offline for maintenance"), "{body}");
    assert!(!id.is_empty());
    assert_eq!(host.ok(&["maintenance", "-a", "hello"]).trim(), "on");
    assert!(
        host.ok(&["apps:info", "-a", "hello"])
            .contains("Maintenance: on")
    );
    // The dynos keep running: nothing was deployed or stopped.
    let ps = host.ok(&["ps", "-a", "hello"]);
    assert!(ps.contains("web.1: up"), "{ps}");
    assert_eq!(
        host.ok(&["releases", "-a", "hello"]),
        releases,
        "nothing released"
    );
    let logs = host.ok(&["logs", "-n", "50", "-a", "hello"]);
    assert!(
        logs.contains("wdeploy[api]: Enable maintenance mode by admin"),
        "{logs}"
    );
    let h80 = logs
        .lines()
        .find(|l| l.contains(&format!("request_id={id}")))
        .unwrap_or_else(|| panic!("no router line for {id}: {logs}"));
    assert!(
        h80.contains("at=info code=H80 desc=\"Maintenance mode\"") && h80.contains("status=503"),
        "{h80}"
    );

    // It is the app's, kept in the store: a restarted host answers so at once.
    host.restart();
    let (status, _, _, body) = poll_until("the app back, in maintenance", SOON, || {
        let answer = page(&host);
        match answer.3.contains("Offline for maintenance") {
            true => Ok(answer),
            false => Err(format!("{} {}", answer.0, answer.3)),
        }
    });
    assert_eq!(status, 503, "{body}");

    host.ok(&["maintenance:off", "-a", "hello"]);
    let (status, body) = host.wait_restored("hello", "/");
    assert_eq!(status, 200, "{body}");
    assert!(
        !host
            .ok(&["apps:info", "-a", "hello"])
            .contains("Maintenance")
    );
    let logs = host.ok(&["logs", "-n", "50", "-a", "hello"]);
    assert!(logs.contains("Disable maintenance mode by admin"), "{logs}");
    let unknown = host.fails(&["maintenance:on", "-a", "nobody"]);
    assert!(unknown.contains("nobody"), "{unknown}");
}

#[test]
fn an_apps_own_pages_are_framed_for_maintenance_and_the_routers_errors() {
    let host = TestHost::start();
    let settings = "[web]\nerror_page = \"https://pages.example.com/oops.html?from=wdeploy\"\n\
                    maintenance_page = \"https://pages.example.com/back-soon.html\"\n";
    host.create_and_push("paged", faults_app().with_settings(settings).path());
    assert_eq!(host.get("paged", "/").0, 200);
    let answer = || {
        let mut response = http()
            .get(&host.url("/"))
            .header("host", &host.host_header("paged"))
            .call()
            .unwrap();
        let kind = response.headers().get("content-type").cloned();
        let kind = kind
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = response.body_mut().read_to_string().unwrap();
        (response.status().as_u16(), kind, body)
    };

    host.ok(&["maintenance:on", "-a", "paged"]);
    let (status, kind, body) = answer();
    assert_eq!(status, 503, "{body}");
    assert!(kind.starts_with("text/html"), "{kind}");
    assert!(
        body.contains("<iframe src=\"https://pages.example.com/back-soon.html\">"),
        "{body}"
    );
    host.ok(&["maintenance:off", "-a", "paged"]);
    assert_eq!(host.get("paged", "/").0, 200);

    // No web dyno: the router's H14, on the app's error page, with the same status.
    host.ok(&["ps:scale", "web=0", "-a", "paged"]);
    let (status, kind, body) = poll_until("no web dyno", SOON, || match answer() {
        (503, kind, body) => Ok((503, kind, body)),
        other => Err(format!("{other:?}")),
    });
    assert_eq!(status, 503);
    assert!(kind.starts_with("text/html"), "{kind}");
    assert!(
        body.contains("<iframe src=\"https://pages.example.com/oops.html?from=wdeploy\">"),
        "{body}"
    );
    let logs = host.ok(&["logs", "-n", "20", "-a", "paged"]);
    assert!(logs.contains("code=H14"), "{logs}");

    // A page that is not https is refused at push, naming the key.
    let refused = host.fails(&[
        "push",
        "-a",
        "paged",
        "--dir",
        faults_app()
            .with_settings("[web]\nerror_page = \"http://pages.example.com/\"\n")
            .path()
            .to_str()
            .unwrap(),
    ]);
    assert!(refused.contains("only https pages are shown"), "{refused}");
}
