//! Blobs and slugs through the API: uploads verified by digest, a release refused
//! until its slug is whole, and a release of real components going live.

use super::ApiFixture;
use axum::body::Body;
use http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

#[tokio::test]
async fn blobs_are_verified_and_listed_as_missing_until_uploaded() {
    let api = ApiFixture::new().await;
    let content = b"not really a component";
    let digest = wdeploy_core::Digest::of_bytes(content);
    let (status, body) = api
        .call(
            "POST",
            "/blobs/missing",
            Some(json!({ "digests": [digest] })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["digests"], json!([digest]));
    let (status, body) = api
        .call(
            "POST",
            "/blobs/missing",
            Some(json!({ "digests": ["sha256:../../etc"] })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    let wrong = api.put_blob(digest.as_str(), b"other bytes".to_vec()).await;
    assert_eq!(wrong, StatusCode::UNPROCESSABLE_ENTITY);
    let bad = api.put_blob("sha256:nothex", content.to_vec()).await;
    assert_eq!(bad, StatusCode::UNPROCESSABLE_ENTITY);
    let ok = api.put_blob(digest.as_str(), content.to_vec()).await;
    assert_eq!(ok, StatusCode::CREATED);
    let (_, body) = api
        .call(
            "POST",
            "/blobs/missing",
            Some(json!({ "digests": [digest] })),
        )
        .await;
    assert_eq!(body["digests"], json!([]));

    // A release naming a slug that was never uploaded is refused before anything runs.
    api.create_app("blobs").await;
    let (status, body) = api
        .call(
            "POST",
            "/apps/blobs/releases",
            Some(json!({
                "slug": wdeploy_core::Digest::of_bytes(b"never uploaded"),
                "procfile": "web: web\n",
                "description": "Deploy",
            })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "a release answers as a stream");
    let (status, message) = release_outcome(&body).expect_err("nothing to release");
    assert_eq!(status, 409);
    assert!(message.contains("has not been uploaded"), "{message}");
}

/// The collector may remove an old unreferenced component after a push asked what was
/// missing: the release is then refused before it is appended, as `blobs_missing`
/// naming the component, and goes live once the component is uploaded again.
#[tokio::test]
async fn a_slug_is_released_only_once_every_component_is_held() {
    use wdeploy_test_components as components;
    let api = ApiFixture::new().await;
    api.create_app("whole").await;
    let bytes = std::fs::read(components::FAULTS_WEB).expect("component");
    let component = wdeploy_core::Digest::of_bytes(&bytes);
    let mut manifest = wdeploy_core::SlugManifest::default();
    manifest.components.insert(
        "web.wasm".into(),
        wdeploy_core::SlugFile {
            digest: component.clone(),
            size: bytes.len() as u64,
        },
    );
    let slug = api.upload(manifest.to_json()).await;
    let release = || {
        api.call(
            "POST",
            "/apps/whole/releases",
            Some(json!({ "slug": slug, "procfile": "web: web\n", "description": "Deploy" })),
        )
    };
    let (_, stream) = release().await;
    let text = stream.as_str().unwrap_or_default();
    assert!(text.contains("\"id\":\"blobs_missing\""), "{text}");
    let (status, message) = release_outcome(&stream).expect_err("a component is missing");
    assert_eq!(status, 409);
    assert!(message.contains(&component.abbreviated()), "{message}");
    let (_, releases) = api.call("GET", "/apps/whole/releases", None).await;
    assert_eq!(releases, json!([]), "nothing was appended");

    api.upload(bytes).await;
    let (_, stream) = release().await;
    let v1 = release_outcome(&stream).expect("v1 goes live");
    assert_eq!(v1["status"], "succeeded");
}

fn release_outcome(stream: &Value) -> Result<Value, (u16, String)> {
    let text = stream.as_str().unwrap_or_default();
    let last = text.lines().last().unwrap_or_default();
    if let Some(json) = last.strip_prefix(wdeploy_api::wire::RESULT_MARKER) {
        return Ok(serde_json::from_str(json).expect("release JSON"));
    }
    let rest = last
        .strip_prefix(wdeploy_api::wire::ERROR_MARKER)
        .unwrap_or_else(|| panic!("no outcome line in {text:?}"));
    let (status, json) = rest.split_once(' ').expect("status and body");
    let body: Value = serde_json::from_str(json).expect("error JSON");
    Err((status.parse().expect("status"), body["message"].to_string()))
}

impl ApiFixture {
    /// Uploads `bytes` as a blob; returns its digest.
    async fn upload(&self, bytes: Vec<u8>) -> wdeploy_core::Digest {
        let digest = wdeploy_core::Digest::of_bytes(&bytes);
        assert_eq!(
            self.put_blob(digest.as_str(), bytes).await,
            StatusCode::CREATED
        );
        digest
    }

    /// `PUT /blobs/{digest}` with `bytes` as the body (raw, not JSON): its status.
    async fn put_blob(&self, digest: &str, bytes: Vec<u8>) -> StatusCode {
        let req = Request::builder()
            .method("PUT")
            .uri(format!("/blobs/{digest}"))
            .header("authorization", format!("Bearer {}", self.token))
            .body(Body::from(bytes))
            .expect("request");
        self.api
            .clone()
            .oneshot(req)
            .await
            .expect("response")
            .status()
    }

    /// Uploads the components and their manifest; returns the slug id.
    async fn upload_slug(&self, components: &[(&str, &str)]) -> wdeploy_core::Digest {
        let mut manifest = wdeploy_core::SlugManifest::default();
        for (name, path) in components {
            let bytes = std::fs::read(path).expect("component");
            let size = bytes.len() as u64;
            let digest = self.upload(bytes).await;
            manifest
                .components
                .insert(name.to_string(), wdeploy_core::SlugFile { digest, size });
        }
        self.upload(manifest.to_json()).await
    }
}

#[tokio::test]
async fn a_release_of_uploaded_components_goes_live_fails_safely_and_rolls_back() {
    use wdeploy_test_components as components;
    let api = ApiFixture::new().await;
    api.create_app("live").await;
    let slug = api
        .upload_slug(&[("web.wasm", components::FAULTS_WEB)])
        .await;
    let deploy = |procfile: &str| json!({ "slug": slug, "procfile": procfile, "description": "Deploy test" });
    let (status, stream) = api
        .call("POST", "/apps/live/releases", Some(deploy("web: web\n")))
        .await;
    assert_eq!(status, StatusCode::OK);
    let v1 = release_outcome(&stream).expect("v1 goes live");
    assert_eq!(
        (v1["version"].as_u64(), v1["status"].as_str()),
        (Some(1), Some("succeeded"))
    );
    assert_eq!(v1["current"], true);
    assert!(stream.as_str().unwrap().contains("-----> Starting v1"));

    let (_, dynos) = api.call("GET", "/apps/live/dynos", None).await;
    assert_eq!(dynos[0]["name"], "web.1");
    assert_eq!(dynos[0]["state"], "up");
    assert_eq!(dynos[0]["process_type"], "web");
    let (_, app) = api.call("GET", "/apps/live", None).await;
    assert_eq!(
        (app["release"].clone(), app["formation"].clone()),
        (json!(1), json!({ "web": 1 }))
    );

    // A config change is a release of the same slug with the new vars.
    let (status, _) = api
        .call("PATCH", "/apps/live/config-vars", Some(json!({ "A": "1" })))
        .await;
    assert_eq!(status, StatusCode::OK);

    // A Procfile naming a component the slug lacks fails as v3; v2 keeps serving.
    let (_, stream) = api
        .call(
            "POST",
            "/apps/live/releases",
            Some(deploy("web: web\nworker: crasher\n")),
        )
        .await;
    let (status, message) = release_outcome(&stream).expect_err("v3 must fail");
    assert_eq!(status, 422);
    assert!(
        message.contains("release v3 failed, the previous release keeps serving"),
        "{message}"
    );
    assert!(message.contains("crasher.wasm"), "{message}");
    let (_, releases) = api.call("GET", "/apps/live/releases", None).await;
    let summary: Vec<(u64, String, bool)> = releases
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["version"].as_u64().unwrap(),
                r["status"].as_str().unwrap().to_string(),
                r["current"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (3, "failed".into(), false),
            (2, "succeeded".into(), true),
            (1, "succeeded".into(), false)
        ]
    );

    // Rollback appends v4, a copy of v1 (config included).
    let (status, v4) = api
        .call("POST", "/apps/live/rollback", Some(json!({ "version": 1 })))
        .await;
    assert_eq!(status, StatusCode::OK, "{v4}");
    assert_eq!(
        (v4["version"].as_u64(), v4["description"].as_str()),
        (Some(4), Some("Rollback to v1"))
    );
    let (_, config) = api.call("GET", "/apps/live/config-vars", None).await;
    assert_eq!(config, json!({}));
    let (_, dynos) = api.call("GET", "/apps/live/dynos", None).await;
    assert_eq!(dynos[0]["release"], 4);

    // Scaling a process type the release lacks is refused by name.
    let (status, body) = api
        .call(
            "PATCH",
            "/apps/live/formation",
            Some(json!({ "worker": 1 })),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("no process type `worker` in v4")
    );
    let (status, _) = api.call("DELETE", "/apps/live", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}
