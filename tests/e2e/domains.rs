//! Custom domains: an app is served at every domain it has, besides `NAME.localhost`, and
//! a domain belongs to one app at most.

use crate::fixture::*;

/// GET / through the router with `host` as the Host header: (status, body).
fn get_at(host: &TestHost, hostname: &str) -> (u16, String) {
    let mut response = http()
        .get(&host.url("/"))
        .header("host", &format!("{hostname}:{}", host.router_port))
        .call()
        .expect("GET through the router");
    let status = response.status().as_u16();
    (
        status,
        response.body_mut().read_to_string().unwrap_or_default(),
    )
}

#[test]
fn an_app_answers_at_its_domains_which_belong_to_one_app_and_survive_a_restart() {
    let mut host = TestHost::start();
    for app in ["one", "two"] {
        host.create_and_push(app, &sample("hello"));
        host.ok(&["config:set", &format!("GREETING={app}"), "-a", app]);
    }
    assert_eq!(get_at(&host, "www.example.test").0, 404);

    let added = host.ok(&["domains:add", "WWW.Example.test.", "-a", "one"]);
    assert!(added.contains("Added www.example.test to one"), "{added}");
    assert!(added.contains("CNAME to one.localhost"), "{added}");
    assert_eq!(
        get_at(&host, "www.example.test"),
        (200, "Hello from one\n".into())
    );
    assert_eq!(
        get_at(&host, "WWW.EXAMPLE.TEST."),
        (200, "Hello from one\n".into())
    );
    // Its own name still works.
    assert_eq!(host.get("one", "/"), (200, "Hello from one\n".into()));
    let list = host.ok(&["domains", "-a", "one"]);
    assert!(
        list.contains("www.example.test") && list.contains("one.localhost"),
        "{list}"
    );
    let logs = host.ok(&["logs", "-a", "one"]);
    assert!(
        logs.contains("Added domain www.example.test by admin"),
        "{logs}"
    );

    // One app per domain; and what cannot be a domain is refused with the rule.
    let taken = host.fails(&["domains:add", "www.example.test", "-a", "two"]);
    assert!(
        taken.contains("www.example.test is already added to another app"),
        "{taken}"
    );
    let own = host.fails(&["domains:add", "shop.localhost", "-a", "two"]);
    assert!(
        own.contains("under this host's own domain localhost"),
        "{own}"
    );
    for bad in [
        "not a domain",
        "127.0.0.1",
        "https://x.example.test",
        "example",
    ] {
        let refused = host.fails(&["domains:add", bad, "-a", "two"]);
        assert!(
            refused.contains("is not a domain wdeploy can serve"),
            "{bad}: {refused}"
        );
    }
    assert!(
        host.fails(&["domains:remove", "www.example.test", "-a", "two"])
            .contains("not found")
    );

    // Kept across a kill -9.
    host.kill_9();
    host.restart();
    host.wait_restored("one", "/");
    assert_eq!(
        get_at(&host, "www.example.test"),
        (200, "Hello from one\n".into())
    );

    host.ok(&["domains:remove", "www.example.test", "-a", "one"]);
    assert_eq!(get_at(&host, "www.example.test").0, 404);
    assert!(
        host.ok(&["domains", "-a", "one"])
            .contains("no custom domains")
    );

    // A destroyed app's domains are free again.
    host.ok(&["domains:add", "api.example.test", "-a", "one"]);
    host.ok(&["apps:destroy", "one", "--confirm", "one"]);
    host.ok(&["domains:add", "api.example.test", "-a", "two"]);
    assert_eq!(
        get_at(&host, "api.example.test"),
        (200, "Hello from two\n".into())
    );
}
