//! The control API in process: the real [`Host`] over the embedded store in a temporary
//! directory, driven through the API's axum router with `oneshot` requests. No binary is
//! spawned and no port is bound, so these run in milliseconds and can look at every
//! route's status and JSON.

use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;
use wdeploy_host::{Backoff, Engine, EngineOptions, Host, HostConfig, Router};

mod slugs;

/// A host in a temp dir and its API, with the admin token.
struct ApiFixture {
    _dir: tempfile::TempDir,
    api: axum::Router,
    token: String,
}

impl ApiFixture {
    async fn new() -> ApiFixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = Engine::new(&EngineOptions {
            max_instances: 16,
            max_memory_bytes: 64 << 20,
            ..EngineOptions::default()
        })
        .expect("engine");
        let me = wdeploy_store::NodeInfo {
            name: "test".parse().expect("node name"),
            advertise: String::new(),
            started_at: chrono::Utc::now(),
            version: String::new(),
            leaving: false,
        };
        let store = wdeploy_store::embedded::open(dir.path(), me).expect("store");
        let (host, token) = Host::open(
            HostConfig {
                data_dir: dir.path().to_path_buf(),
                domain: "localhost".into(),
                router_port: 8080,
                backoff: Backoff::default(),
                deadlines: wdeploy_host::Deadlines {
                    stop: Duration::from_secs(1),
                    ..wdeploy_host::Deadlines::default()
                },
                max_addons_mb: 1024,
                log_rate: Default::default(),
                people: Default::default(),
                blob_gc: Default::default(),
                drains: Default::default(),
                tls: Default::default(),
                acme: Default::default(),
            },
            store,
            engine,
            Router::new("localhost"),
        )
        .await
        .expect("host");
        let token = token.expect("a new host makes an admin token");
        let api = wdeploy_api::server::router(host as Arc<dyn wdeploy_api::server::Platform>);
        ApiFixture {
            _dir: dir,
            api,
            token,
        }
    }

    /// Sends a request with the admin token; returns the status and the body as JSON
    /// (or as a JSON string when it is not JSON).
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call_as(Some(&self.token), method, path, body).await
    }

    async fn call_as(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let req = match body {
            Some(body) => req
                .header("content-type", "application/json")
                .body(Body::from(body.to_string())),
            None => req.body(Body::empty()),
        }
        .expect("request");
        let response = self.api.clone().oneshot(req).await.expect("response");
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    async fn create_app(&self, name: &str) {
        let (status, body) = self
            .call("POST", "/apps", Some(json!({ "name": name })))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
}

#[tokio::test]
async fn every_route_needs_the_token() {
    let api = ApiFixture::new().await;
    for token in [None, Some("wrong"), Some("")] {
        let (status, body) = api.call_as(token, "GET", "/apps", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(body["id"], "unauthorized");
    }
    let (status, _) = api.call_as(None, "GET", "/apps/x/releases", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = api.call("GET", "/apps", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!([]));
}

#[tokio::test]
async fn apps_are_created_listed_refused_and_destroyed() {
    let api = ApiFixture::new().await;
    api.create_app("hello").await;
    let (status, body) = api
        .call("POST", "/apps", Some(json!({ "name": "hello" })))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    for bad in ["Hello", "a", "../etc", "x.y"] {
        let (status, body) = api
            .call("POST", "/apps", Some(json!({ "name": bad })))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("not a valid app name")
        );
    }
    let (status, body) = api.call("GET", "/apps/hello", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["name"], "hello");
    assert_eq!(body["web_url"], "http://hello.localhost:8080");
    assert_eq!(body["release"], Value::Null);
    // Unknown and malformed names are both "not found".
    for path in ["/apps/nope", "/apps/NOPE", "/apps/no.pe/releases"] {
        let (status, body) = api.call("GET", path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }
    let (status, _) = api.call("DELETE", "/apps/hello", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, body) = api.call("GET", "/apps", None).await;
    assert_eq!(body, json!([]));
}

#[tokio::test]
async fn the_release_log_is_listed_in_pages_newest_first() {
    let api = ApiFixture::new().await;
    api.create_app("paged").await;
    for i in 0..25 {
        let (status, body) = api
            .call(
                "PATCH",
                "/apps/paged/config-vars",
                Some(json!({ "N": i.to_string() })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let versions = |page: &Value| -> Vec<u64> {
        let page = page.as_array().expect("a list of releases");
        page.iter()
            .map(|r| r["version"].as_u64().unwrap())
            .collect()
    };
    let (status, first) = api.call("GET", "/apps/paged/releases?limit=10", None).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(versions(&first), (16..=25).rev().collect::<Vec<_>>());
    assert_eq!(first[0]["current"], true);
    // The next page starts before the oldest of this one; `current` still marks only v25.
    let (_, second) = api
        .call("GET", "/apps/paged/releases?limit=10&before=16", None)
        .await;
    assert_eq!(versions(&second), (6..=15).rev().collect::<Vec<_>>());
    assert!(
        second
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["current"] == false)
    );
    let (_, last) = api
        .call("GET", "/apps/paged/releases?before=6&limit=10", None)
        .await;
    assert_eq!(versions(&last), [5, 4, 3, 2, 1]);
    let (_, none) = api.call("GET", "/apps/paged/releases?before=1", None).await;
    assert_eq!(versions(&none), Vec::<u64>::new());
    // Without a limit, the default page (100) holds the whole of this log.
    let (_, all) = api.call("GET", "/apps/paged/releases", None).await;
    assert_eq!(versions(&all).len(), 25);

    for bad in [
        "limit=0",
        "limit=1001",
        "limit=ten",
        "before=0",
        "before=-1",
    ] {
        let (status, body) = api
            .call("GET", &format!("/apps/paged/releases?{bad}"), None)
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
    }
    let (_, body) = api.call("GET", "/apps/paged/releases?limit=0", None).await;
    assert!(body.to_string().contains("1 to 1000"), "{body}");
}

#[tokio::test]
async fn config_changes_are_releases_and_concurrent_ones_lose_nothing() {
    let api = Arc::new(ApiFixture::new().await);
    api.create_app("conf").await;
    let (status, body) = api
        .call("PATCH", "/apps/conf/config-vars", Some(json!({ "A": "1" })))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({ "A": "1" }));

    // Twenty config:sets at once, each of its own key: every one is in the result, and
    // each made exactly one release.
    let sets = (0..20).map(|i| {
        let api = api.clone();
        tokio::spawn(async move {
            let key = format!("K{i}");
            let (status, body) = api
                .call("PATCH", "/apps/conf/config-vars", Some(json!({ key: "v" })))
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        })
    });
    for set in sets {
        set.await.expect("config:set task");
    }
    let (_, config) = api.call("GET", "/apps/conf/config-vars", None).await;
    assert_eq!(config.as_object().unwrap().len(), 21, "{config}");
    let (_, releases) = api.call("GET", "/apps/conf/releases", None).await;
    let releases = releases.as_array().unwrap();
    let versions: Vec<u64> = releases
        .iter()
        .map(|r| r["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, (1..=21).rev().collect::<Vec<_>>());
    assert_eq!(releases[0]["current"], true);
    assert_eq!(releases[0]["status"], "succeeded");
    assert!(releases[1..].iter().all(|r| r["current"] == false));
    assert_eq!(releases[20]["description"], "Set A config vars");

    let (status, body) = api
        .call(
            "PATCH",
            "/apps/conf/config-vars",
            Some(json!({ "1BAD": "x" })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = api
        .call(
            "PATCH",
            "/apps/conf/config-vars",
            Some(json!({ "A": null })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.get("A").is_none());
}

#[tokio::test]
async fn rollback_needs_a_release_with_a_slug() {
    let api = ApiFixture::new().await;
    api.create_app("roll").await;
    let (status, body) = api
        .call("POST", "/apps/roll/rollback", Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    api.call("PATCH", "/apps/roll/config-vars", Some(json!({ "A": "1" })))
        .await;
    api.call("PATCH", "/apps/roll/config-vars", Some(json!({ "A": "2" })))
        .await;
    let (status, body) = api
        .call("POST", "/apps/roll/rollback", Some(json!({ "version": 1 })))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["message"].as_str().unwrap().contains("v1 has no slug"));
    let (status, body) = api
        .call("POST", "/apps/roll/rollback", Some(json!({ "version": 9 })))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn cancelling_needs_a_release_in_progress() {
    let api = ApiFixture::new().await;
    let (status, body) = api
        .call("POST", "/apps/nowhere/releases/cancel", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    api.create_app("calm").await;
    api.call("PATCH", "/apps/calm/config-vars", Some(json!({ "A": "1" })))
        .await;
    let (status, body) = api.call("POST", "/apps/calm/releases/cancel", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["message"], "calm has no release in progress");
}

#[tokio::test]
async fn formation_logs_and_add_on_data_through_the_api() {
    let api = ApiFixture::new().await;
    api.create_app("misc").await;
    let (status, body) = api
        .call(
            "PATCH",
            "/apps/misc/formation",
            Some(json!({ "worker": 2 })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({ "worker": 2 }));
    let (status, body) = api
        .call("PATCH", "/apps/misc/formation", Some(json!({ "web": 101 })))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (_, body) = api.call("GET", "/apps/misc/formation", None).await;
    assert_eq!(body, json!({ "worker": 2 }));

    let (status, body) = api
        .call("GET", "/apps/misc/log-sessions?source=bogus", None)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = api
        .call("GET", "/apps/misc/log-sessions?source=wdeploy", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let text = body.as_str().unwrap_or_default();
    assert!(text.contains("wdeploy[api]: App created"), "{text}");
    assert!(text.contains("Scaled to worker=2 by admin"), "{text}");

    let (status, body) = api
        .call(
            "PUT",
            "/apps/misc/kv/entry?key=greeting",
            Some(json!({ "value": "hi" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = api
        .call("GET", "/apps/misc/kv/entry?key=greeting", None)
        .await;
    assert_eq!(body["value"], "hi");
    assert_eq!(body["bucket"], "default");
    let (status, _) = api
        .call("GET", "/apps/misc/kv/entry?key=nothing", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, body) = api.call("GET", "/apps/misc/kv/keys", None).await;
    assert_eq!(body["keys"], json!(["greeting"]));
    let (_, body) = api.call("GET", "/apps/misc/queues", None).await;
    assert_eq!(body, json!([]));
}

/// The outcome line of a release stream: the release, or the error's status and message.
#[tokio::test]
async fn log_drains_are_added_listed_refused_and_removed_by_id_or_url() {
    let api = ApiFixture::new().await;
    let (status, _) = api
        .call_as(None, "GET", "/apps/hello/log-drains", None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api.call("GET", "/apps/nope/log-drains", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    api.create_app("hello").await;
    let url = "https://user:secret@logs.example.com/in";
    let (status, added) = api
        .call(
            "POST",
            "/apps/hello/log-drains",
            Some(json!({ "url": url })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    assert_eq!(added["url"], url);
    let id = added["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("d."), "{added}");
    let (status, listed) = api.call("GET", "/apps/hello/log-drains", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed, json!([added]));
    for (bad, status, says) in [
        (
            url,
            StatusCode::CONFLICT,
            "already drains to https://logs.example.com:443",
        ),
        (
            "gopher://x:70",
            StatusCode::UNPROCESSABLE_ENTITY,
            "scheme `gopher`",
        ),
        (
            "syslog://10.1.2.3:514",
            StatusCode::UNPROCESSABLE_ENTITY,
            "not a public address",
        ),
    ] {
        let (got, body) = api
            .call(
                "POST",
                "/apps/hello/log-drains",
                Some(json!({ "url": bad })),
            )
            .await;
        assert_eq!(got, status, "{bad}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains(says) && !message.contains("secret"),
            "{message}"
        );
    }
    let (status, removed) = api
        .call("DELETE", &format!("/apps/hello/log-drains/{id}"), None)
        .await;
    assert_eq!((status, removed), (StatusCode::OK, added));
    let (status, _) = api
        .call("DELETE", &format!("/apps/hello/log-drains/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // By URL (percent-encoded as one path segment).
    api.call(
        "POST",
        "/apps/hello/log-drains",
        Some(json!({ "url": "syslog+tls://logs.example.com:6514" })),
    )
    .await;
    let (status, body) = api
        .call(
            "DELETE",
            "/apps/hello/log-drains/syslog%2Btls%3A%2F%2Flogs.example.com%3A6514",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, listed) = api.call("GET", "/apps/hello/log-drains", None).await;
    assert_eq!(listed, json!([]));
}
