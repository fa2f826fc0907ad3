//! TLS certificates users bring (`certs:add CERT.pem KEY.pem`): checked before they are
//! kept (the key matches, the certificate covers the domain, it is valid now), refused
//! with one line that names the files; listed by `certs` with issuer and expiry, never
//! with the key; gone with their domain and their app; and `domains:add --acme` shows as
//! ordering. (Serving them on SNI is the TLS listener's test.)

use crate::fixture::*;

/// The cells of the `certs` row of `domain` (columns are two spaces or more apart).
fn row(listing: &str, domain: &str) -> Option<Vec<String>> {
    listing
        .lines()
        .find(|line| line.split_whitespace().next() == Some(domain))
        .map(|line| {
            line.split("  ")
                .map(str::trim)
                .filter(|cell| !cell.is_empty())
                .map(str::to_string)
                .collect()
        })
}

/// `GET /apps/{app}/certs` as the API answers it.
fn certs_json(host: &TestHost, app: &str) -> String {
    let mut response = http()
        .get(&format!("{}/apps/{app}/certs", host.api))
        .header("authorization", &format!("Bearer {}", host.token))
        .call()
        .expect("GET certs");
    assert_eq!(response.status().as_u16(), 200);
    response.body_mut().read_to_string().expect("a body")
}

#[test]
fn certificates_users_bring_are_checked_listed_and_go_with_their_domain() {
    let mut host = TestHost::start();
    host.ok(&["apps:create", "shop", "--no-link"]);
    host.ok(&["apps:create", "other", "--no-link"]);
    for (domain, app) in [
        ("www.shop.test", "shop"),
        ("api.shop.test", "shop"),
        ("www.other.test", "other"),
    ] {
        host.ok(&["domains:add", domain, "-a", app]);
    }
    assert!(
        host.ok(&["certs", "-a", "shop"])
            .contains("shop has no certificates"),
    );
    let ca = CertAuthority::new("wdeploy Test CA");
    let good = ca.leaf("shop", &["www.shop.test", "api.shop.test"]);

    // Refused, each with its reason naming the files; nothing is kept.
    let stranger = ca.leaf("stranger", &["www.shop.test"]);
    let refused = host.fails(&[
        "certs:add",
        good.cert_path(),
        stranger.key_path(),
        "-a",
        "shop",
    ]);
    assert!(
        refused.contains(&format!(
            "the private key in {} does not match the certificate in {}",
            stranger.key_path(),
            good.cert_path()
        )),
        "{refused}"
    );
    assert_eq!(refused.trim().lines().count(), 1, "{refused}");
    let elsewhere = ca.leaf("elsewhere", &["x.example.test", "*.nope.test"]);
    let (cert, key) = (elsewhere.cert_path(), elsewhere.key_path());
    let refused = host.fails(&[
        "certs:add",
        cert,
        key,
        "--domain",
        "www.shop.test",
        "-a",
        "shop",
    ]);
    assert!(
        refused.contains(&format!(
            "the certificate in {cert} does not cover www.shop.test: it covers x.example.test, *.nope.test"
        )),
        "{refused}"
    );
    let refused = host.fails(&["certs:add", cert, key, "-a", "shop"]);
    assert!(
        refused.contains(&format!(
            "the certificate in {cert} covers none of shop's domains (api.shop.test, www.shop.test): it covers x.example.test, *.nope.test"
        )),
        "{refused}"
    );
    let old = ca.leaf_between("old", &["www.shop.test"], 2020, 2021);
    let refused = host.fails(&["certs:add", old.cert_path(), old.key_path(), "-a", "shop"]);
    assert!(
        refused.contains(&format!(
            "the certificate in {} expired on 2021-01-01",
            old.cert_path()
        )),
        "{refused}"
    );
    let refused = host.fails(&["certs:add", good.key_path(), good.key_path(), "-a", "shop"]);
    assert!(
        refused.contains("holds no PEM `CERTIFICATE` block"),
        "{refused}"
    );
    // Oversized files are refused before anything is parsed.
    let big = ca.dir().join("big.pem");
    std::fs::write(&big, format!("{}{}", good.cert_pem, "#".repeat(70_000))).unwrap();
    let big = big.to_str().unwrap();
    let refused = host.fails(&["certs:add", big, good.key_path(), "-a", "shop"]);
    assert!(
        refused.contains(&format!("the certificate in {big} is "))
            && refused.contains("over the limit of 65536 bytes for a chain"),
        "{refused}"
    );
    let refused = host.fails(&["certs:add", good.cert_path(), big, "-a", "shop"]);
    assert!(
        refused.contains(&format!("the private key in {big} is "))
            && refused.contains("over the limit of 16384 bytes"),
        "{refused}"
    );
    assert!(
        host.ok(&["certs", "-a", "shop"])
            .contains("shop has no certificates")
    );

    // Without --domain, every domain of the app it covers gets it.
    let added = host.ok(&["certs:add", good.cert_path(), good.key_path(), "-a", "shop"]);
    for domain in ["www.shop.test", "api.shop.test"] {
        assert!(
            added.contains(&format!(
                "Added certificate for {domain} to shop (issuer wdeploy Test CA, expires 2040-01-01)"
            )),
            "{added}"
        );
    }
    let listing = host.ok(&["certs", "-a", "shop"]);
    assert_eq!(
        row(&listing, "Domain").unwrap(),
        ["Domain", "Source", "Issuer", "Expires", "Status"],
        "{listing}"
    );
    let www = row(&listing, "www.shop.test").expect(&listing);
    assert_eq!(www[..3], ["www.shop.test", "manual", "wdeploy Test CA"]);
    assert!(
        www[3].starts_with("2040-01-01 (in ") && www[3].ends_with(" days)"),
        "{listing}"
    );
    assert_eq!(www[4], "ok", "{listing}");
    let json = certs_json(&host, "shop");
    assert!(
        json.contains("\"issuer\":\"wdeploy Test CA\"") && !json.contains("PRIVATE KEY"),
        "{json}"
    );
    let logs = host.ok(&["logs", "-a", "shop"]);
    assert!(
        logs.contains("Added certificate for www.shop.test by admin"),
        "{logs}"
    );

    // Another app cannot add a certificate for a domain it does not have.
    let refused = host.fails(&[
        "certs:add",
        good.cert_path(),
        good.key_path(),
        "--domain",
        "www.shop.test",
        "-a",
        "other",
    ]);
    assert!(
        refused.contains("www.shop.test is not a domain of other"),
        "{refused}"
    );
    let refused = host.fails(&[
        "certs:add",
        good.cert_path(),
        good.key_path(),
        "-a",
        "other",
    ]);
    assert!(
        refused.contains("covers none of other's domains (www.other.test)"),
        "{refused}"
    );
    assert!(
        host.ok(&["certs", "-a", "other"])
            .contains("has no certificates")
    );

    // Kept across a kill -9.
    host.kill_9();
    host.restart();
    let listing = host.ok(&["certs", "-a", "shop"]);
    assert!(row(&listing, "api.shop.test").is_some(), "{listing}");

    // certs:remove takes one; domains:remove takes the domain's.
    let removed = host.ok(&["certs:remove", "API.shop.test", "-a", "shop"]);
    assert!(
        removed.contains("Removed the certificate of api.shop.test from shop"),
        "{removed}"
    );
    let listing = host.ok(&["certs", "-a", "shop"]);
    assert!(row(&listing, "api.shop.test").is_none(), "{listing}");
    assert!(row(&listing, "www.shop.test").is_some(), "{listing}");
    let again = host.fails(&["certs:remove", "api.shop.test", "-a", "shop"]);
    assert!(again.contains("not found"), "{again}");
    host.ok(&["domains:remove", "www.shop.test", "-a", "shop"]);
    assert!(
        host.ok(&["certs", "-a", "shop"])
            .contains("has no certificates")
    );
    host.ok(&["domains:add", "www.shop.test", "-a", "shop"]);
    assert!(
        host.ok(&["certs", "-a", "shop"])
            .contains("has no certificates"),
        "a domain added again has no certificate"
    );
}

#[test]
fn an_acme_domain_shows_as_ordering_until_a_certificate_replaces_it_and_goes_with_its_app() {
    let host = TestHost::start();
    host.ok(&["apps:create", "shop", "--no-link"]);
    host.ok(&["apps:create", "other", "--no-link"]);
    let added = host.ok(&["domains:add", "secure.shop.test", "--acme", "-a", "shop"]);
    assert!(added.contains("being ordered over ACME"), "{added}");
    let listing = host.ok(&["certs", "-a", "shop"]);
    let cells = row(&listing, "secure.shop.test").expect(&listing);
    assert_eq!(
        cells[..4],
        ["secure.shop.test", "ACME", "-", "-"],
        "{listing}"
    );
    // The ACME worker starts ordering at once; this host's directory (the fixture's: no
    // CA listens there) refuses it, so the order may already show its error.
    assert!(
        cells[4] == "ordering" || cells[4].starts_with("error: "),
        "{listing}"
    );

    // A certificate brought for it replaces the order (a wildcard, through an
    // intermediate: the chain is the leaf, then the intermediate).
    let root = CertAuthority::new("wdeploy Test Root");
    let intermediate = root.intermediate("wdeploy Test Intermediate");
    let leaf = intermediate.leaf("wild", &["*.shop.test"]);
    let chain = intermediate.dir().join("chain.pem");
    std::fs::write(&chain, format!("{}{}", leaf.cert_pem, intermediate.pem)).unwrap();
    let chain = chain.to_str().unwrap();
    // Not in the wrong order (the root did not sign the leaf).
    let wrong = intermediate.dir().join("wrong.pem");
    std::fs::write(&wrong, format!("{}{}", leaf.cert_pem, root.pem)).unwrap();
    let refused = host.fails(&[
        "certs:add",
        wrong.to_str().unwrap(),
        leaf.key_path(),
        "-a",
        "shop",
    ]);
    assert!(refused.contains("is out of order"), "{refused}");
    host.ok(&[
        "certs:add",
        chain,
        leaf.key_path(),
        "--domain",
        "secure.shop.test",
        "-a",
        "shop",
    ]);
    let listing = host.ok(&["certs", "-a", "shop"]);
    let secure = row(&listing, "secure.shop.test").expect(&listing);
    assert_eq!(
        (secure[1].as_str(), secure[2].as_str(), secure[4].as_str()),
        ("manual", "wdeploy Test Intermediate", "ok"),
        "{listing}"
    );

    // Destroying the app takes it: the domain is free, and its new app has none.
    host.ok(&["apps:destroy", "shop", "--confirm", "shop"]);
    host.ok(&["domains:add", "secure.shop.test", "-a", "other"]);
    assert!(
        host.ok(&["certs", "-a", "other"])
            .contains("has no certificates")
    );
    host.ok(&["apps:create", "shop", "--no-link"]);
    assert!(
        host.ok(&["certs", "-a", "shop"])
            .contains("has no certificates")
    );
}
