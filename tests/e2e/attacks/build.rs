//! Config vars are the app's data: they never configure a build.

use crate::fixture::*;
use std::os::unix::fs::PermissionsExt;

/// Config vars are set through the API by anyone with access to the app; they must never
/// configure the build on the pushing machine (RUSTC_WRAPPER would run a program there).
#[test]
fn config_vars_never_configure_the_build() {
    let host = TestHost::start();
    host.ok(&["apps:create", "envbuild", "--no-link"]);
    let app = copy_sample("hello");
    let outside = tempfile::tempdir().expect("tempdir");
    let marker = outside.path().join("wrapper-ran");
    let wrapper = outside.path().join("wrapper.sh");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\ntouch '{}'\nexec \"$@\"\n", marker.display()),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let wrapper_var = format!("RUSTC_WRAPPER={}", wrapper.display());
    let cc_var = format!("CC={}", wrapper.display());
    host.ok(&[
        "config:set",
        &wrapper_var,
        &cc_var,
        "RUSTFLAGS=--cfg evil",
        "-a",
        "envbuild",
    ]);

    // By default the config vars do not reach the build at all.
    let dir = app.path().to_str().unwrap();
    let pushed = host.ok(&["push", "-a", "envbuild", "--dir", dir]);
    assert!(pushed.contains("-----> Released v2"), "{pushed}");
    assert!(
        !marker.exists(),
        "a config var ran a program during the build"
    );

    // Asked for, they reach the buildpack's ENV_DIR, and the Rust buildpack exports none
    // of them into cargo's environment (the changed env rebuilds, so cargo does run).
    let pushed = host.ok(&["push", "-a", "envbuild", "--dir", dir, "--build-env"]);
    assert!(pushed.contains("-----> Released v3"), "{pushed}");
    assert!(!pushed.contains("Build cached"), "{pushed}");
    assert!(
        !marker.exists(),
        "a config var ran a program during the build"
    );
    assert_eq!(
        host.get("envbuild", "/"),
        (200, "Hello from wdeploy\n".into())
    );
}
