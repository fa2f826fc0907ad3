//! The collector of blobs no release references: a destroyed app's components (and their
//! compiled code) and an upload no release took go; what any release references (an app's rollback targets
//! too) stays, and its app still starts from it after a restart.

use crate::fixture::*;
use std::path::{Path, PathBuf};
use wdeploy_core::Digest;

/// Where the host keeps a blob of this content.
fn blob_file(data: &Path, digest: &Digest) -> PathBuf {
    let hex = digest.hex();
    data.join("blobs/sha256").join(&hex[..2]).join(&hex[2..])
}

/// The compiled files of a component in the host's compile cache.
fn compiled_files(data: &Path, digest: &Digest) -> Vec<PathBuf> {
    std::fs::read_dir(data.join("compiled"))
        .map(|entries| {
            entries
                .map(|e| e.unwrap().path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(digest.hex()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The digests of an app directory's components.
fn components(dir: &Path) -> Vec<Digest> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
        .map(|p| Digest::of_file(&p).unwrap())
        .collect()
}

#[test]
fn blobs_no_release_references_are_collected_and_the_rest_stay() {
    // A grace long enough for each push to become a release: its blobs are not
    // referenced until then.
    let mut host = TestHost::start_with(&["--blob-gc-every", "1", "--blob-gc-grace", "10"]);
    let kept_app = faults_app();
    let gone_app = stuck_app();
    host.create_and_push("kept", kept_app.path());
    host.create_and_push("gone", gone_app.path());
    let (kept, gone) = (components(kept_app.path()), components(gone_app.path()));
    assert!(!kept.is_empty() && !gone.is_empty());
    for digest in kept.iter().chain(&gone) {
        assert!(
            blob_file(host.data(), digest).is_file(),
            "{digest} not stored"
        );
    }
    // The components ran, so they were compiled and cached.
    let compiled = |digests: &[Digest]| -> usize {
        digests
            .iter()
            .map(|d| compiled_files(host.data(), d).len())
            .sum()
    };
    assert!(compiled(&gone) > 0, "nothing of gone compiled");
    // An upload no release ever took.
    let orphan = b"uploaded, then the push was abandoned".as_slice();
    let digest = Digest::of_bytes(orphan);
    let status = http()
        .put(&format!("{}/blobs/{}", host.api, digest.as_str()))
        .header("authorization", &format!("Bearer {}", host.token))
        .send(orphan)
        .expect("PUT the blob")
        .status()
        .as_u16();
    assert!((200..300).contains(&status), "{status}");

    host.ok(&["apps:destroy", "gone", "--confirm", "gone"]);
    poll_until("the unreferenced blobs collected", SOON, || {
        let left: Vec<_> = gone
            .iter()
            .chain([&digest])
            .filter(|d| {
                blob_file(host.data(), d).exists() || !compiled_files(host.data(), d).is_empty()
            })
            .collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    });
    for digest in &kept {
        assert!(
            blob_file(host.data(), digest).is_file(),
            "{digest} was collected"
        );
    }
    assert!(
        compiled(&kept) > 0,
        "the kept app's compiled code was collected"
    );
    // The app that stayed starts from its blobs again after a restart.
    host.restart();
    poll_until("kept restored", SOON, || match host.get("kept", "/") {
        (200, body) if body == "ok\n" => Ok(()),
        other => Err(format!("{other:?}")),
    });
}

/// The race the collector leaves a push: the host said it held a blob (old, and no
/// release referenced it), and removed it before the push's release. Played here by
/// removing the blob by hand while the push waits for its turn behind a release command
/// that spins until cancelled: the release is refused before it is appended, the CLI
/// uploads the blob again, and the push succeeds.
#[test]
fn a_push_uploads_again_a_blob_removed_while_it_waited_to_be_released() {
    let host = TestHost::start();
    let app = faults_app().with_procfile("web: web\n");
    host.create_and_push("whole", app.path());
    let spinning = faults_app().with_procfile("web: web\nrelease: spinner\n");
    let mut held = Running::spawn(host.command(&[
        "push",
        "-a",
        "whole",
        "--dir",
        spinning.path().to_str().unwrap(),
    ]));
    held.wait_for_text("-----> Running release command", BUILD);
    let mut push = Running::spawn(host.command(&[
        "push",
        "-a",
        "whole",
        "--dir",
        app.path().to_str().unwrap(),
    ]));
    push.wait_for_text("nothing to upload, the host has every blob", BUILD);
    let web = Digest::of_file(&app.path().join("web.wasm")).unwrap();
    std::fs::remove_file(blob_file(host.data(), &web)).expect("remove the blob");

    host.ok(&["releases:cancel", "-a", "whole"]);
    assert_eq!(held.wait(SOON).code(), Some(1), "{}", held.output());
    assert!(push.wait(SOON).success(), "{}", push.output());
    let out = push.output();
    assert!(
        out.contains("-----> The host no longer holds every blob of this slug: uploading again"),
        "{out}"
    );
    assert!(out.contains("-----> Released v3"), "{out}");
    assert!(blob_file(host.data(), &web).is_file());
    assert_eq!(host.get("whole", "/"), (200, "ok\n".to_string()));
}
