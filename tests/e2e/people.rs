//! People and their apps: a second person's token reaches only the apps they have access
//! to, on every app route the API serves (the list comes from the server itself, so a
//! route added later is tested too), through a bearer token and the dashboard's cookie;
//! tokens are listed and revoked; admin-only calls stay an admin's.

use crate::fixture::*;
use std::process::Output;
use ureq::http;

const BOB: &str = "bob@example.com";

/// `users:add EMAIL`: the person's first token, as printed (the line after the header).
pub(crate) fn add_user(host: &TestHost, email: &str) -> String {
    let out = host.ok(&["users:add", email]);
    let token = printed_token(&out);
    assert_eq!(token.len(), 64, "{out}");
    token
}

/// The id of `who`'s first token, as `tokens` lists it to `host`'s admin.
pub(crate) fn token_id(host: &TestHost, who: &str) -> String {
    let all = host.ok(&["tokens"]);
    all.lines()
        .find(|l| l.split_whitespace().nth(1) == Some(who))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no token of {who} in:\n{all}"))
        .to_string()
}

/// Logs in to the dashboard of the API at `api` with `token`: the session cookie, as
/// `name=value` to send back.
pub(crate) fn dashboard_session(api: &str, token: &str) -> String {
    let response = http()
        .post(&format!("{api}/session"))
        .header("content-type", "application/json")
        .send(serde_json::json!({ "token": token }).to_string().as_bytes())
        .expect("POST /session");
    assert_eq!(response.status().as_u16(), 200);
    let cookie = response.headers().get("set-cookie");
    let cookie = cookie
        .and_then(|v| v.to_str().ok())
        .expect("a session cookie");
    cookie.split(';').next().expect("name=value").to_string()
}

/// The token `users:add` or `tokens:create` printed (the line after its header).
fn printed_token(out: &str) -> String {
    let mut lines = out
        .lines()
        .skip_while(|l| !l.starts_with("Token (shown only now"));
    lines.next().expect("a token header");
    lines.next().expect("the token").trim().to_string()
}

/// One API call with a bearer token and, for a method with a body, `{}`: (status, body).
/// The body is read only for errors (`log-events` streams for ever).
fn call(host: &TestHost, token: &str, method: &http::Method, path: &str) -> (u16, String) {
    let url = format!("{}{path}", host.api);
    let auth = format!("Bearer {token}");
    let agent = http();
    let sent = match *method {
        http::Method::GET => agent.get(&url).header("authorization", &auth).call(),
        http::Method::DELETE => agent.delete(&url).header("authorization", &auth).call(),
        ref m => {
            let request = match *m {
                http::Method::POST => agent.post(&url),
                http::Method::PATCH => agent.patch(&url),
                _ => agent.put(&url),
            };
            request
                .header("authorization", &auth)
                .header("content-type", "application/json")
                .send(b"{}".as_slice())
        }
    };
    let mut response = sent.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = response.status().as_u16();
    let body = if status >= 400 {
        response.body_mut().read_to_string().unwrap_or_default()
    } else {
        String::new()
    };
    (status, body)
}

/// Every app route of the server, for app `app`; destroying the app comes last.
fn app_routes(app: &str) -> Vec<(http::Method, String)> {
    let mut routes: Vec<(http::Method, String)> = wdeploy_api::server::app_routes()
        .into_iter()
        .map(|(method, path)| {
            let path = path
                .replace("{app}", app)
                .replace("{dyno}", "web.1")
                .replace("{email}", "carol%40example.com");
            (method, path)
        })
        .collect();
    let destroy = format!("/apps/{app}");
    routes.sort_by_key(|(method, path)| *method == http::Method::DELETE && *path == destroy);
    routes
}

#[test]
fn a_second_token_is_refused_on_every_app_route_until_access_add() {
    let host = TestHost::start();
    host.ok(&["apps:create", "owned", "--no-link"]);
    let bob = add_user(&host, BOB);
    let routes = app_routes("owned");
    assert!(routes.len() >= 20, "{routes:?}");

    // Refused on every route, exactly as an app that does not exist is: the name of
    // someone else's app does not leak.
    for (method, path) in &routes {
        let (status, body) = call(&host, &bob, method, path);
        let ghost = path.replacen("/apps/owned", "/apps/ghost", 1);
        let (ghost_status, ghost_body) = call(&host, &host.token, method, &ghost);
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert!(
            body.contains("app owned not found"),
            "{method} {path}: {body}"
        );
        if ghost_status == 404 && ghost_body.contains("app ghost not found") {
            assert_eq!(
                body.replace("owned", "ghost"),
                ghost_body,
                "{method} {path}"
            );
        }
    }
    // Nor does another spelling of the path reach it: a percent-encoded name, a route
    // no table lists.
    for path in ["/apps/%6fwned/config-vars", "/apps/owned/no-such-route"] {
        let (status, body) = call(&host, &bob, &http::Method::GET, path);
        assert_eq!(status, 404, "{path}: {body}");
        assert!(body.contains("not found"), "{path}: {body}");
        assert!(!body.contains("no such API route"), "{path}: {body}");
    }
    // The CLI says the same, and bob's list is empty.
    let out = host.cli_with_token(&bob, &["config", "-a", "owned"]);
    assert!(
        stderr(&out).contains("app owned not found"),
        "{}",
        stderr(&out)
    );
    let out = host.cli_with_token(&bob, &["apps"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("owned"));

    host.ok(&["access:add", BOB, "-a", "owned"]);
    let access = host.ok(&["access", "-a", "owned"]);
    assert!(access.contains(BOB) && access.contains("admin"), "{access}");

    // Accepted on every route now: whatever the handler says of the empty body, it is
    // not the refusal (not 401, 403 or the app's 404).
    for (method, path) in &routes {
        let (status, body) = call(&host, &bob, method, path);
        let refused = status == 401
            || status == 403
            || (status == 404 && body.contains("app owned not found"));
        assert!(!refused, "{method} {path}: {status} {body}");
    }
    // The last route destroyed the app: nobody's access outlives it.
    let out = host.cli_with_token(&bob, &["apps"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("owned"));
}

#[test]
fn people_tokens_cookies_and_who_made_each_change() {
    let host = TestHost::start();
    host.ok(&["apps:create", "shared", "--no-link"]);
    host.ok(&["apps:create", "private", "--no-link"]);
    let bob = add_user(&host, BOB);
    let out = host.fails(&["users:add", BOB]);
    assert!(out.contains("already a user"), "{out}");
    let out = host.fails(&["users:add", "Not An Email"]);
    assert!(out.contains("not an email address"), "{out}");
    let out = host.fails(&["access:add", "carol@example.com", "-a", "shared"]);
    assert!(out.contains("wdeploy users:add carol@example.com"), "{out}");
    host.ok(&["access:add", BOB, "-a", "shared"]);

    // Admin-only calls are refused with a clear line.
    let bob_cli = |args: &[&str]| host.cli_with_token(&bob, args);
    for args in [
        &["users"][..],
        &["users:add", "eve@example.com"],
        &["cluster:rotate-key"],
        &["nodes"],
    ] {
        let out = bob_cli(args);
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("only an admin may"),
            "{}",
            stderr(&out)
        );
    }
    let (status, body) = call(&host, &bob, &http::Method::GET, "/metrics");
    assert_eq!(status, 403, "{body}");
    let users = host.ok(&["users"]);
    assert!(users.contains(BOB) && users.contains("admin"), "{users}");

    // Bob's app is his: he made it, so he has access; the admin sees every app.
    assert!(
        bob_cli(&["apps:create", "bobs", "--no-link"])
            .status
            .success()
    );
    let mine = String::from_utf8_lossy(&bob_cli(&["apps"]).stdout).into_owned();
    assert!(
        mine.contains("shared") && mine.contains("bobs") && !mine.contains("private"),
        "{mine}"
    );
    let all = host.ok(&["apps"]);
    assert!(all.contains("private") && all.contains("bobs"), "{all}");
    assert!(host.ok(&["access", "-a", "bobs"]).contains(BOB));

    // Every change says who made it in the app's log.
    assert!(
        bob_cli(&["ps:scale", "web=0", "-a", "shared"])
            .status
            .success()
    );
    assert!(bob_cli(&["restart", "-a", "shared"]).status.success());
    // Bob deploys (the release is his) and starts a one-off (the log says so).
    let faults = faults_app();
    let dir = faults.path().to_str().expect("a UTF-8 path");
    let out = bob_cli(&["push", "-a", "shared", "--dir", dir]);
    assert!(out.status.success(), "{}", stderr(&out));
    let releases =
        String::from_utf8_lossy(&bob_cli(&["releases", "-a", "shared"]).stdout).into_owned();
    assert!(releases.contains(BOB), "{releases}");
    let run =
        String::from_utf8_lossy(&bob_cli(&["run", "worker", "-a", "shared"]).stdout).into_owned();
    let one_off = run
        .split_whitespace()
        .find(|w| w.starts_with("run."))
        .unwrap_or_else(|| panic!("no dyno name in {run}"));
    let log = host.ok(&["logs", "--source", "wdeploy", "-a", "shared"]);
    for line in [
        "Access granted to bob@example.com by admin",
        "Scaled to web=0 by bob@example.com",
        "Restarting all dynos by bob@example.com",
        &format!("as {one_off} by bob@example.com"),
    ] {
        assert!(log.contains(line), "{line} not in:\n{log}");
    }

    // The dashboard's cookie sees what the token sees.
    let agent = http();
    let session = dashboard_session(host.api.as_str(), &bob);
    let with_cookie = |path: &str| {
        let mut response = agent
            .get(&format!("{}{path}", host.api))
            .header("cookie", &session)
            .call()
            .expect("GET with the cookie");
        let status = response.status().as_u16();
        (
            status,
            response.body_mut().read_to_string().unwrap_or_default(),
        )
    };
    let (status, apps) = with_cookie("/apps");
    assert_eq!(status, 200);
    assert!(
        apps.contains("shared") && !apps.contains("private"),
        "{apps}"
    );
    let (status, body) = with_cookie("/apps/private/config-vars");
    assert_eq!(status, 404, "{body}");

    // Tokens: bob lists his own, the admin everyone's; never a token or its hash.
    let theirs = String::from_utf8_lossy(&bob_cli(&["tokens"]).stdout).into_owned();
    let owners = |listing: &str| -> Vec<String> {
        listing
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
            .collect()
    };
    assert_eq!(owners(&theirs), vec![BOB.to_string()], "{theirs}");
    assert!(!theirs.contains(&bob), "a token was listed");
    let (admin_id, bob_id) = (token_id(&host, "admin"), token_id(&host, BOB));
    let out = bob_cli(&["tokens:revoke", &admin_id]);
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
    let out = host.fails(&["tokens:revoke", &admin_id]);
    assert!(out.contains("last admin token"), "{out}");

    // Revoked, bob's token and his open session stop at once.
    host.ok(&["tokens:revoke", &bob_id]);
    let out = bob_cli(&["apps"]);
    assert!(
        stderr(&out).contains("invalid credentials"),
        "{}",
        stderr(&out)
    );
    assert_eq!(with_cookie("/apps").0, 401);

    // A person's tokens are capped, and so is what a description may hold.
    let out = host.fails(&["tokens:create", "--description", &"x".repeat(201)]);
    assert!(out.contains("at most 200 characters"), "{out}");
    let carol = add_user(&host, "carol@example.com");
    let made = tokens_until_refused(&host, &carol);
    assert_eq!(made, 50, "carol's tokens, the first included");
    // Others are not held back by carol's.
    assert!(host.ok(&["tokens:create"]).contains("shown only now"));

    // A second admin token lets the first go.
    let made = host.ok(&["tokens:create", "--description", "spare"]);
    let spare = made.lines().nth(1).expect("the token").trim().to_string();
    host.ok(&["tokens:revoke", &admin_id]);
    assert!(
        host.cli(&["apps"])
            .stderr
            .starts_with(b"error: invalid credentials")
    );
    let out = host.cli_with_token(&spare, &["apps"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Makes tokens as `token`'s person until the host refuses one; returns how many they
/// then hold (the refusal must be the cap's clear error).
fn tokens_until_refused(host: &TestHost, token: &str) -> usize {
    for held in 1..=100 {
        let out = host.cli_with_token(token, &["tokens:create"]);
        if !out.status.success() {
            let err = stderr(&out);
            assert!(err.contains("the most one person may have"), "{err}");
            return held;
        }
    }
    panic!("100 tokens made: no cap");
}

#[test]
fn login_whoami_token_and_logout_act_on_the_saved_login_alone() {
    let host = TestHost::start();
    let bob = add_user(&host, BOB);
    // The saved login only: neither variable of the fixture's environment.
    let saved = |args: &[&str]| {
        host.command(args)
            .env_remove("WDEPLOY_HOST")
            .env_remove("WDEPLOY_TOKEN")
            .output()
            .expect("run wdeploy")
    };
    let creds = host.config_home().join("wdeploy/credentials.json");

    // A wrong token is refused before anything is saved.
    let out = saved(&["login", "--host", &host.api, "--token", &"0".repeat(64)]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("invalid credentials"),
        "{}",
        stderr(&out)
    );
    assert!(!creds.exists());
    let out = saved(&["whoami"]);
    assert!(stderr(&out).contains("not logged in"), "{}", stderr(&out));

    let out = saved(&["login", "--host", &host.api, "--token", &host.token]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(said.contains("as admin (admin)"), "{said}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&creds).expect("saved").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let who = |out: Output| {
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(who(saved(&["whoami"])), "admin");
    assert_eq!(who(saved(&["auth:token"])), host.token);
    let json: serde_json::Value =
        serde_json::from_str(&who(saved(&["auth:whoami", "--json"]))).expect("JSON");
    assert_eq!(json, serde_json::json!({ "email": "admin", "admin": true }));

    // Another person's login replaces it; the environment's token wins over both.
    let said = who(saved(&["login", "--host", &host.api, "--token", &bob]));
    assert!(said.contains(&format!("as {BOB};")), "{said}");
    assert_eq!(who(saved(&["whoami"])), BOB);
    assert_eq!(who(host.cli(&["whoami"])), "admin");

    // Logging out forgets the login, not the token.
    let said = who(saved(&["logout"]));
    assert!(
        said.contains(&format!("Logged out of {}", host.api)),
        "{said}"
    );
    assert!(said.contains("tokens:revoke"), "{said}");
    assert!(!creds.exists());
    let out = saved(&["whoami"]);
    assert!(stderr(&out).contains("not logged in"), "{}", stderr(&out));
    assert_eq!(who(host.cli_with_token(&bob, &["whoami"])), BOB);
    assert!(who(saved(&["auth:logout"])).contains("No saved login"));
}

/// A person who lost their token gets another from an admin (`tokens:create --user`);
/// a person removed (`users:remove`) keeps nothing: every token of theirs is refused at
/// once, their access goes, and added again they start with none of it.
#[test]
fn a_person_gets_a_new_token_from_an_admin_and_a_person_removed_keeps_nothing() {
    let host = TestHost::start();
    host.ok(&["apps:create", "shop", "--no-link"]);
    let first = add_user(&host, BOB);
    host.ok(&["access:add", BOB, "-a", "shop"]);
    let as_bob = |token: &str, args: &[&str]| host.cli_with_token(token, args);

    // Only an admin makes a token for someone else, and only for a person the host has.
    let out = as_bob(&first, &["tokens:create", "--user", "carol@example.com"]);
    assert!(
        stderr(&out).contains("only an admin may make a token for someone else"),
        "{}",
        stderr(&out)
    );
    let err = host.fails(&["tokens:create", "--user", "carol@example.com"]);
    assert!(err.contains("wdeploy users:add carol@example.com"), "{err}");
    let second = printed_token(&host.ok(&["tokens:create", "--user", BOB]));
    let out = as_bob(&second, &["whoami"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), BOB);
    assert!(
        host.ok(&["tokens"])
            .contains("made by tokens:create (admin)")
    );

    // Nobody removes an admin; only an admin removes anyone.
    let out = as_bob(&first, &["users:remove", BOB]);
    assert!(
        stderr(&out).contains("only an admin may remove users"),
        "{}",
        stderr(&out)
    );
    let err = host.fails(&["users:remove", "admin"]);
    assert!(
        err.contains("admin is an admin, and an admin is never removed"),
        "{err}"
    );

    let said = host.ok(&["users:remove", BOB]);
    assert!(
        said.contains(&format!(
            "Removed {BOB}: 2 tokens revoked, access to 1 app (shop) taken away."
        )),
        "{said}"
    );
    for token in [&first, &second] {
        let out = as_bob(token, &["apps"]);
        assert!(
            stderr(&out).starts_with("error: invalid credentials"),
            "{}",
            stderr(&out)
        );
    }
    assert!(!host.ok(&["users"]).contains(BOB));
    assert!(!host.ok(&["access", "-a", "shop"]).contains(BOB));
    assert!(!host.ok(&["tokens"]).contains(BOB));
    let log = host.ok(&["logs", "-a", "shop"]);
    assert!(
        log.contains(&format!("Access of {BOB} ended: removed by admin")),
        "{log}"
    );
    let err = host.fails(&["users:remove", BOB]);
    assert!(err.contains(&format!("no user {BOB}")), "{err}");

    // Added again, bob starts with a new token and no app.
    let again = add_user(&host, BOB);
    let out = as_bob(&again, &["apps"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("shop"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
