//! The web dashboard, used the way a person does: in a real headless Chromium (driven over
//! WebDriver), against a real host running a real app.

use crate::fixture::*;
use fantoccini::{Client, Locator};
use std::time::{Duration, Instant};

/// How long the page may take to show what the host already did (it refreshes every 2 s).
const PAGE: Duration = Duration::from_secs(30);

#[test]
fn a_person_logs_in_rolls_back_scales_and_tails_the_log_in_a_real_browser() {
    if skip_browser() {
        return;
    }
    let host = TestHost::start();
    host.create_and_push("dash", &sample("hello"));
    host.ok(&["config:set", "GREETING=two", "-a", "dash"]);
    assert_eq!(host.get("dash", "/"), (200, "Hello from two\n".into()));
    host.ok(&["domains:add", "www.dash.example.com", "-a", "dash"]);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime for the WebDriver client");
    runtime.block_on(async {
        let browser = Browser::start(1280, 2200).await;
        let page = &browser.client;

        // `wdeploy dashboard` names the page; logged out, it asks for a token, and a wrong
        // one is refused by name.
        let url = host.ok(&["dashboard"]).trim().to_string();
        assert_eq!(url, format!("{}/", host.api));
        let app_url = host.ok(&["dashboard", "-a", "dash"]).trim().to_string();
        assert_eq!(app_url, format!("{}/#/apps/dash", host.api));
        assert!(
            host.fails(&["dashboard", "-a", "nope"])
                .contains("not found")
        );
        page.goto(&url).await.expect("open the dashboard");
        log_in(page, "not-the-token").await;
        let error = wait_for(page, "#login-error:not([hidden])").await;
        assert_eq!(
            error.text().await.unwrap(),
            "That token is not valid on this host."
        );
        log_in(page, &host.token).await;

        // The apps list shows the app with its release and dynos.
        let row = wait_text(page, "#apps tr[data-app=dash]", |t| t.contains("v2")).await;
        assert!(row.contains("web=1"), "{row}");
        click(page, "a[href='#/apps/dash']").await;
        wait_text(page, "#current-release", |t| t.contains("v2 serving")).await;

        // Config vars are hidden until asked for.
        let config = wait_text(page, "#config", |t| t.contains("GREETING")).await;
        assert!(
            !config.contains("two"),
            "a value shows before it is asked for: {config}"
        );
        click(page, "#config button").await;
        wait_text(page, "#config", |t| t.contains("two")).await;
        // Its custom domain (no certificate yet) and who has access.
        let domain = wait_text(
            page,
            "#domains tr[data-domain='www.dash.example.com']",
            |t| t.contains("dash.localhost"),
        )
        .await;
        assert!(domain.contains("none (HTTP only)"), "{domain}");
        wait_text(page, "#access", |t| t.contains("admin")).await;

        // Rollback: the router answers with v1's config again.
        click(page, "#release-table button[data-rollback='1']").await;
        wait_text(page, "#current-release", |t| t.contains("v3 serving")).await;
        assert_eq!(host.get("dash", "/"), (200, "Hello from wdeploy\n".into()));
        let releases = host.ok(&["releases", "-a", "dash"]);
        assert!(releases.contains("Rollback to v1"), "{releases}");
        // What the rollback's going live printed, which nobody watched, is there to read.
        click(page, "#release-table button[data-output='3']").await;
        wait_text(page, "#release-output pre[data-output-of='3']", |t| {
            t.contains("-----> Starting v3")
        })
        .await;

        // Scale web to 2 and see both dynos.
        let quantity = page
            .find(Locator::Css("#scale-web"))
            .await
            .expect("the web quantity");
        quantity.clear().await.expect("clear");
        quantity.send_keys("2").await.expect("type 2");
        click(page, "#scale-web-apply").await;
        for dyno in ["web.1", "web.2"] {
            wait_text(page, &format!("#dyno-table tr[data-dyno='{dyno}']"), |t| {
                t.contains("up")
            })
            .await;
        }
        let ps = host.ok(&["ps", "-a", "dash"]);
        assert!(ps.contains("web.2: up"), "{ps}");
        // The worker, never scaled, is listed at 0; a process type restarts from its row.
        wait_attr(page, "#scale-worker", "value", |v| v == "0").await;
        click(page, "#restart-web").await;
        wait_text(page, "main > p.ok", |t| {
            t.contains("Restarted the web dynos")
        })
        .await;
        let logs = host.ok(&["logs", "-n", "300", "-a", "dash"]);
        assert!(
            logs.contains("wdeploy[api]: Restarting web by admin"),
            "{logs}"
        );

        // Maintenance mode on, then off again.
        click(page, "#maintenance-toggle").await;
        wait_text(page, "#maintenance-state", |t| t.contains("mode: on")).await;
        assert_eq!(host.get("dash", "/").0, 503);
        click(page, "#maintenance-toggle").await;
        wait_text(page, "#maintenance-state", |t| t.contains("mode: off")).await;
        assert_eq!(host.get("dash", "/").0, 200);

        // A request's line shows in the live tail within 2 s.
        let probe = format!("/probe-{}", std::process::id());
        let asked = Instant::now();
        assert_eq!(host.get("dash", &probe).0, 200);
        wait_text(page, "#log", |t| t.contains(&format!("path=\"{probe}\""))).await;
        let seen_after = asked.elapsed();
        assert!(
            seen_after < Duration::from_secs(2),
            "the router's line took {seen_after:?} to show"
        );

        // Filtered to the router's lines, the app's own lines go.
        page.find(Locator::Css("#log-source"))
            .await
            .expect("the source filter")
            .select_by_value("router")
            .await
            .expect("pick router");
        let probe2 = format!("{probe}-router");
        assert_eq!(host.get("dash", &probe2).0, 200);
        let log = wait_text(page, "#log", |t| t.contains(&format!("path=\"{probe2}\""))).await;
        assert!(
            !log.contains("app[web."),
            "an app line passed the filter: {log}"
        );

        // The charts draw the app's history (a sample every 10 s) once it has one.
        for chart in ["#chart-requests", "#chart-latency", "#chart-memory"] {
            wait_attr(page, chart, "data-samples", |n| n != "0").await;
        }
        let screenshot = page.screenshot().await.expect("a screenshot");
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-app.png");
        std::fs::write(&path, screenshot).expect("write the screenshot");
        eprintln!("the app page: {}", path.display());

        // Renamed from its page: the page follows the new name, which serves.
        let to = page
            .find(Locator::Css("#rename-to"))
            .await
            .expect("the rename field");
        to.clear().await.expect("clear");
        to.send_keys("dash-renamed").await.expect("type the name");
        click(page, "#rename").await;
        wait_text(page, "#app-name", |t| t == "dash-renamed").await;
        wait_text(page, "main > p.ok", |t| {
            t.contains("Renamed dash to dash-renamed")
        })
        .await;
        assert_eq!(host.get("dash-renamed", "/").0, 200);
        assert_eq!(host.get("dash", "/").0, 404);
        browser
            .client
            .clone()
            .close()
            .await
            .expect("close the browser");
    });
}

#[test]
fn the_session_cookie_is_locked_down_and_needs_the_dashboard_header_to_change_anything() {
    let host = TestHost::start();
    host.ok(&["apps:create", "cookie", "--no-link"]);
    let agent = http();
    let login = |token: &str| {
        agent
            .post(&format!("{}/session", host.api))
            .header("content-type", "application/json")
            .send(serde_json::json!({ "token": token }).to_string().as_bytes())
            .expect("POST /session")
    };
    assert_eq!(login("wrong").status().as_u16(), 401);
    // A login body is a token, not a payload: 4 KiB at most.
    assert_eq!(login(&"x".repeat(8 << 10)).status().as_u16(), 413);
    let malformed = agent
        .post(&format!("{}/session", host.api))
        .send(b"token=abc".as_slice())
        .expect("POST /session");
    assert_eq!(malformed.status().as_u16(), 422);
    let response = login(&host.token);
    assert_eq!(response.status().as_u16(), 200);
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a session cookie")
        .to_string();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    assert!(
        !cookie.contains(&host.token),
        "the token itself went into the cookie"
    );
    let session = cookie.split(';').next().expect("name=value").to_string();

    // Reading with the cookie works; changing needs the dashboard's header too.
    let apps = agent
        .get(&format!("{}/apps", host.api))
        .header("cookie", &session)
        .call()
        .expect("GET /apps");
    assert_eq!(apps.status().as_u16(), 200);
    let scale = |with_header: bool| {
        let mut request = agent
            .patch(&format!("{}/apps/cookie/formation", host.api))
            .header("cookie", &session)
            .header("content-type", "application/json");
        if with_header {
            request = request.header("x-wdeploy-dashboard", "1");
        }
        request
            .send(br#"{"web":0}"#.as_slice())
            .expect("PATCH formation")
            .status()
            .as_u16()
    };
    assert_eq!(scale(false), 403);
    assert_eq!(scale(true), 200);

    // Logged out, the cookie opens nothing.
    let out = agent
        .delete(&format!("{}/session", host.api))
        .header("cookie", &session)
        .call()
        .expect("DELETE /session");
    assert_eq!(out.status().as_u16(), 204);
    let after = agent
        .get(&format!("{}/apps", host.api))
        .header("cookie", &session)
        .call()
        .expect("GET /apps");
    assert_eq!(after.status().as_u16(), 401);

    // The page and its files are served to anyone, with a strict policy.
    let page = agent.get(&format!("{}/", host.api)).call().expect("GET /");
    assert_eq!(page.status().as_u16(), 200);
    let csp = page
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
}

async fn log_in(page: &Client, token: &str) {
    let field = wait_for(page, "#token").await;
    field.clear().await.expect("clear the token field");
    field.send_keys(token).await.expect("type the token");
    click(page, "#login-button").await;
}

/// The element `css`, once the page has it.
async fn wait_for(page: &Client, css: &str) -> fantoccini::elements::Element {
    page.wait()
        .at_most(PAGE)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css} on the page: {e}"))
}

async fn click(page: &Client, css: &str) {
    wait_for(page, css)
        .await
        .click()
        .await
        .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
}

/// Waits until the element `css` exists and its `attribute` passes `check`.
async fn wait_attr(page: &Client, css: &str, attribute: &str, check: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + PAGE;
    let mut last = None;
    loop {
        if let Ok(element) = page.find(Locator::Css(css)).await
            && let Ok(value) = element.attr(attribute).await
        {
            if value.as_deref().is_some_and(&check) {
                return;
            }
            last = value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {css}[{attribute}]; last seen: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the element `css` exists and its text passes `check`; returns the text.
async fn wait_text(page: &Client, css: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + PAGE;
    let mut last = String::new();
    loop {
        if let Ok(element) = page.find(Locator::Css(css)).await
            && let Ok(text) = element.text().await
        {
            if check(&text) {
                return text;
            }
            last = text;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {css}; last seen:\n{last}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
