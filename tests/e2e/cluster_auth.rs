//! A node joining a NATS server that asks who it is: TLS and a password in the URL, or the
//! key of a user in a `.creds` or nkey seed file (operator mode, as `nsc` and managed
//! NATS services set a server up). Each refusal says what to give and shows no secret.

use crate::fixture::*;
use std::os::unix::fs::PermissionsExt;
use wdeploy_store::cluster::testing::{NatsServer, Operator};

/// The certificate chain a node's router shows another node (a TLS handshake on its
/// router port); the handshake then fails, as this client has no certificate to show.
fn node_chain(port: u16) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    #[derive(Debug)]
    struct Keeps(std::sync::Mutex<Vec<CertificateDer<'static>>>);
    impl rustls::client::danger::ServerCertVerifier for Keeps {
        fn verify_server_cert(
            &self,
            leaf: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            let mut chain = vec![leaf.clone().into_owned()];
            chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
            *self.0.lock().unwrap() = chain;
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::General("TLS 1.3 only".into()))
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            vec![rustls::SignatureScheme::ED25519]
        }
    }
    let keeps = std::sync::Arc::new(Keeps(std::sync::Mutex::new(Vec::new())));
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(keeps.clone())
        .with_no_client_auth();
    let name = ServerName::try_from("any.node.wdeploy.invalid").unwrap();
    let mut tls = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let _ = tls.complete_io(&mut tcp);
    keeps.0.lock().unwrap().clone()
}

/// The DNS names a certificate is for.
fn certificate_names(certificate: &rustls::pki_types::CertificateDer<'_>) -> Vec<String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, parsed) = X509Certificate::from_der(certificate).expect("a certificate");
    let names = parsed
        .subject_alternative_name()
        .expect("one SAN extension");
    let names = names.map(|ext| ext.value.general_names.clone());
    names
        .unwrap_or_default()
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(dns.to_string()),
            _ => None,
        })
        .collect()
}

/// `wdeploy host ARGS` as node b: it must stop without joining; what it said.
fn refused(args: &[&str]) -> String {
    let out = wdeploy()
        .args(["host", "--data"])
        .arg(tempfile::tempdir().unwrap().path())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--api",
            "127.0.0.1:0",
            "--node",
            "b",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "joined with {args:?}");
    stderr(&out)
}

#[test]
fn a_node_joins_a_nats_that_asks_for_tls_and_credentials_and_says_why_it_cannot_without() {
    let ca = CertAuthority::new("wdeploy test NATS CA");
    let leaf = ca.leaf("nats", &["127.0.0.1"]);
    let ca_file = ca.dir().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let ca_file = ca_file.to_str().unwrap();
    let (cert, key) = (leaf.cert_path(), leaf.key_path());
    let nats = wdeploy_store::cluster::testing::NatsServer::start_with(&[
        "--tls",
        "--tlscert",
        cert,
        "--tlskey",
        key,
        "--user",
        "wd",
        "--pass",
        "s3cret",
    ])
    .expect("nats-server with TLS and a password");
    let at = |creds: &str| format!("tls://{creds}127.0.0.1:{}", nats.port);

    let url = at("wd:s3cret@");
    let args = ["--cluster", &url, "--cluster-ca", ca_file, "--node", "a"];
    let node = TestHost::start_as(&args, None);
    node.ok(&["apps:create", "over-tls", "--no-link"]);
    assert!(node.ok(&["apps"]).contains("over-tls"));
    let said = node.output();
    let joined = format!("node a of the cluster at {} (as wd)", at(""));
    assert!(said.contains(&joined), "{said}");
    assert!(!said.contains("s3cret"), "{said}");

    // Refused: each says which cluster it could not join and why, and shows no secret.
    let refused = |url: String, ca: Option<&str>| {
        let mut args = vec!["--cluster", &url];
        args.extend(ca.map(|ca| ["--cluster-ca", ca]).into_iter().flatten());
        refused(&args)
    };
    let wrong = refused(at("wd:not-it@"), Some(ca_file));
    assert!(
        wrong.contains(&format!("joining the cluster at {} (as wd)", at(""))),
        "{wrong}"
    );
    assert!(wrong.contains("refused this node"), "{wrong}");
    assert!(!wrong.contains("not-it"), "{wrong}");
    let none = refused(at(""), Some(ca_file));
    assert!(none.contains("authorization"), "{none}");
    let untrusted = refused(at("wd:s3cret@"), None);
    assert!(untrusted.contains("--cluster-ca FILE"), "{untrusted}");
    assert!(!untrusted.contains("s3cret"), "{untrusted}");
    let missing = refused(at("wd:s3cret@"), Some("/nonexistent/ca.pem"));
    assert!(
        missing.contains("reading --cluster-ca /nonexistent/ca.pem"),
        "{missing}"
    );
    let malformed = refused("http://127.0.0.1:4222".to_string(), None);
    assert!(malformed.contains("nats://HOST:PORT"), "{malformed}");
}

#[test]
fn nodes_join_a_nats_in_operator_mode_each_with_its_own_creds_file() {
    let operator = Operator::new().unwrap();
    let config = operator.config_file();
    let nats = NatsServer::start_with(&["-c", config.to_str().unwrap()]).expect("nats-server");
    let url = nats.url();
    let keys = tempfile::tempdir().unwrap();
    let creds_of = |node: &str| {
        let path = keys.path().join(format!("{node}.creds"));
        std::fs::write(&path, operator.user_creds(node, None)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path.to_str().unwrap().to_string()
    };
    let (creds_a, creds_b) = (creds_of("a"), creds_of("b"));
    let node_a = [
        "--cluster",
        &url,
        "--cluster-creds",
        &creds_a,
        "--node",
        "a",
    ];
    let a = TestHost::start_as(&node_a, None);
    a.ok(&["apps:create", "keyed", "--no-link"]);
    // A second node, as another user of the same account, sees the same state.
    let node_b = [
        "--cluster",
        &url,
        "--cluster-creds",
        &creds_b,
        "--node",
        "b",
    ];
    let b = TestHost::start_as(&node_b, Some(&a.token));
    assert!(b.ok(&["apps"]).contains("keyed"));
    let said = a.output();
    let joined = format!("node a of the cluster at {url} (with the key in {creds_a})");
    assert!(said.contains(&joined), "{said}");
    let seed = |creds: &str| {
        let text = std::fs::read_to_string(creds).unwrap();
        text.lines()
            .find(|l| l.starts_with("SU"))
            .unwrap()
            .to_string()
    };
    assert!(!said.contains(&seed(&creds_a)), "{said}");

    // Refused: a user of another operator, a file that holds no key, a key given twice.
    let stranger = keys.path().join("stranger.creds");
    std::fs::write(&stranger, Operator::new().unwrap().user_creds("c", None)).unwrap();
    let stranger = stranger.to_str().unwrap();
    let other = refused(&["--cluster", &url, "--cluster-creds", stranger]);
    assert!(other.contains("refused this node"), "{other}");
    assert!(!other.contains(&seed(stranger)), "{other}");
    let none = refused(&["--cluster", &url]);
    assert!(none.contains("--cluster-creds FILE"), "{none}");
    let not_a_key = keys.path().join("notes.txt");
    std::fs::write(&not_a_key, "hello\n").unwrap();
    let not_a_key = not_a_key.to_str().unwrap();
    let bad = refused(&["--cluster", &url, "--cluster-creds", not_a_key]);
    assert!(
        bad.contains(&format!("{not_a_key} holds no nkey seed")),
        "{bad}"
    );
    assert!(bad.contains(".creds file"), "{bad}");
    let twice = format!("nats://wd:pw@127.0.0.1:{}", nats.port);
    let both = refused(&["--cluster", &twice, "--cluster-creds", &creds_b]);
    assert!(both.contains("give one of them"), "{both}");
}

#[test]
fn a_rotated_cluster_key_fails_no_forwarded_request_and_the_old_one_ends_with_its_grace() {
    let cluster = Cluster::start(2);
    let (a, b) = (cluster.node("a"), cluster.node("b"));
    a.create_and_push("hello", &sample("hello"));
    for node in [a, b] {
        poll_until("both nodes to serve hello", SOON, || {
            match node.get("hello", "/") {
                (200, _) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        });
    }
    // Requests through both nodes all along: one of them forwards each to the other.
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let sent = std::sync::Arc::new(AtomicUsize::new(0));
    let traffic = {
        let (stop, sent) = (stop.clone(), sent.clone());
        let targets = [a, b].map(|n| (n.url("/"), n.host_header("hello")));
        std::thread::spawn(move || {
            let mut answers: Vec<u16> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                for (url, host) in &targets {
                    let status = match http().get(url).header("host", host).call() {
                        Ok(response) => response.status().as_u16(),
                        Err(ureq::Error::StatusCode(code)) => code,
                        Err(_) => 0,
                    };
                    answers.push(status);
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            answers
        })
    };
    // `nodes` shows both, on one key, as each node finds it over the hop.
    let key_of = |listing: &str, node: &str| -> String {
        let line = listing.lines().find(|l| l.starts_with(&format!("{node} ")));
        let line = line.unwrap_or_else(|| panic!("no line for {node}: {listing}"));
        let key = line
            .split("key ")
            .nth(1)
            .unwrap_or_else(|| panic!("{line}"));
        key.split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let listing = b.ok(&["nodes"]);
    assert!(listing.starts_with("=== Nodes (2)"), "{listing}");
    let first_key = key_of(&listing, "a");
    assert_eq!(key_of(&listing, "b"), first_key, "{listing}");
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("b ") && l.ends_with("(this node)"))
    );
    // Each node shows a certificate of its own, for its name, from the cluster's CA.
    let before = [a, b].map(|node| node_chain(node.router_port));
    for (chain, name) in before.iter().zip(["a", "b"]) {
        assert_eq!(chain.len(), 1, "one key, one certificate");
        assert_eq!(
            certificate_names(&chain[0]),
            vec![format!("{name}.node.wdeploy.invalid")]
        );
    }
    assert_ne!(before[0], before[1], "each node its own certificate");
    let short = a.fails(&["cluster:rotate-key", "--grace", "5"]);
    assert!(short.contains("at least 10s"), "{short}");
    let said = b.ok(&["cluster:rotate-key", "--grace", "10"]);
    assert!(said.contains("Rotated the cluster's key"), "{said}");
    // Each node shows its new certificate with the new CA vouched for by the old one,
    // then, the grace over, the new certificate alone.
    for (node, before) in [a, b].into_iter().zip(&before) {
        poll_until("each node on the new key", SOON, || {
            let chain = node_chain(node.router_port);
            match chain.len() == 2 && chain[0] != before[0] {
                true => Ok(()),
                false => Err(format!("{} certificates", chain.len())),
            }
        });
    }
    for (node, before) in [a, b].into_iter().zip(&before) {
        poll_until("the old key's grace to end on each node", SOON, || {
            let chain = node_chain(node.router_port);
            match chain.len() == 1 && chain[0] != before[0] {
                true => Ok(()),
                false => Err(format!("{} certificates", chain.len())),
            }
        });
    }
    // A hundred more requests once the old key is given up everywhere.
    let then = sent.load(Ordering::Relaxed);
    poll_until("requests after the grace", SOON, || {
        let more = sent.load(Ordering::Relaxed) - then;
        if more >= 100 {
            Ok(())
        } else {
            Err(format!("{more} sent"))
        }
    });
    stop.store(true, Ordering::Relaxed);
    let answers = traffic.join().unwrap();
    let failed: Vec<u16> = answers.iter().copied().filter(|s| *s != 200).collect();
    let statuses: std::collections::BTreeSet<u16> = failed.iter().copied().collect();
    assert!(answers.len() > 100, "{} requests", answers.len());
    assert!(
        failed.is_empty(),
        "{} of {} failed, with {statuses:?}",
        failed.len(),
        answers.len()
    );

    // `nodes` shows the new key on both.
    let listing = a.ok(&["nodes"]);
    let new_key = key_of(&listing, "a");
    assert_ne!(new_key, first_key, "{listing}");
    assert_eq!(key_of(&listing, "b"), new_key, "{listing}");

    // A host alone has no other node to rotate a key with.
    let alone = TestHost::start();
    let listing = alone.ok(&["nodes"]);
    assert!(listing.starts_with("=== Nodes (1)"), "{listing}");
    assert!(listing.trim_end().ends_with("(this node)"), "{listing}");
    let refused = alone.fails(&["cluster:rotate-key"]);
    assert!(refused.contains("cluster of one"), "{refused}");
}

#[test]
fn a_node_answering_at_another_nodes_address_is_told_apart_by_its_certificate() {
    let cluster = Cluster::start(2);
    let (a, b) = (cluster.node("a"), cluster.node("b"));
    // Node c claims b's address (a copied configuration): whoever forwards to c there
    // reaches b, whose certificate is for b, and the hop fails rather than hand b what
    // was meant for c.
    let url = cluster.nats.url();
    let b_addr = format!("127.0.0.1:{}", b.router_port);
    let args = [
        "--cluster",
        &url,
        "--node",
        "c",
        "--stop-grace",
        "2",
        "--advertise",
        &b_addr,
    ];
    let _c = TestHost::start_as(&args, Some(&a.token));
    let listing = poll_until("a to list c", SOON, || {
        let listing = a.ok(&["nodes"]);
        match listing.starts_with("=== Nodes (3)") {
            true => Ok(listing),
            false => Err(listing),
        }
    });
    let line = |name: &str| {
        let line = listing.lines().find(|l| l.starts_with(&format!("{name} ")));
        line.unwrap_or_else(|| panic!("no line for {name}: {listing}"))
    };
    let expected =
        format!("unreachable: another node answers at {b_addr}: its certificate is not c's");
    assert!(line("c").ends_with(&expected), "{listing}");
    assert!(line("b").contains(" key "), "{listing}");
}

/// A person's API rate holds across the nodes: spreading calls over two nodes buys no
/// more than one node gives (each node alone would take 10 at once; together they take
/// 10, then refuse on either).
#[test]
fn a_persons_api_rate_is_the_clusters_not_each_nodes() {
    let cluster = Cluster::start_with(2, &["--api-rate", "1", "--api-burst", "10"]);
    let (a, b) = (cluster.node("a"), cluster.node("b"));
    let bob = crate::people::add_user(a, "bob@example.com");
    let mut admitted = 0;
    let refused = (0..20).find_map(|i| {
        let node = if i % 2 == 0 { a } else { b };
        let out = node.cli_with_token(&bob, &["apps"]);
        if out.status.success() {
            admitted += 1;
            None
        } else {
            Some(stderr(&out))
        }
    });
    let refused = refused.expect("no call refused across the two nodes");
    assert!(
        refused.contains("too many API calls from bob@example.com"),
        "{refused}"
    );
    assert!(refused.contains("on all its nodes together"), "{refused}");
    assert!((10..15).contains(&admitted), "{admitted} calls admitted");
    // The admin's calls are not counted.
    for node in [a, b, a, b] {
        node.ok(&["apps"]);
    }
}

/// A dashboard session opened through one node's API works through the other's (a load
/// balancer may send each request anywhere), and a logout through either ends it on
/// both; a token revoked ends its sessions everywhere.
#[test]
fn a_dashboard_session_works_through_every_node() {
    let cluster = Cluster::start(2);
    let (a, b) = (cluster.node("a"), cluster.node("b"));
    let agent = http();
    let login = |node: &TestHost, token: &str| crate::people::dashboard_session(&node.api, token);
    let apps = |node: &TestHost, cookie: &str| {
        let response = agent
            .get(&format!("{}/apps", node.api))
            .header("cookie", cookie)
            .call()
            .expect("GET /apps");
        response.status().as_u16()
    };
    let session = login(a, &a.token);
    assert_eq!((apps(a, &session), apps(b, &session)), (200, 200));
    let out = agent
        .delete(&format!("{}/session", b.api))
        .header("cookie", &session)
        .call()
        .expect("DELETE /session");
    assert_eq!(out.status().as_u16(), 204);
    assert_eq!((apps(a, &session), apps(b, &session)), (401, 401));

    // Bob's session, opened through b, ends on a with his token.
    let bob = crate::people::add_user(a, "bob@example.com");
    let session = login(b, &bob);
    assert_eq!(apps(a, &session), 200);
    let id = crate::people::token_id(a, "bob@example.com");
    a.ok(&["tokens:revoke", &id]);
    assert_eq!((apps(a, &session), apps(b, &session)), (401, 401));
}
