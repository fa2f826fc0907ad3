//! Choosing and running buildpacks: detection, prebuilt components (the `wasm`
//! buildpack), a third-party buildpack folder, and the build cache.

use crate::fixture::*;

#[test]
fn a_directory_no_buildpack_detects_is_refused() {
    let app = tempfile::tempdir().unwrap();
    std::fs::write(app.path().join("README"), "not an app").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut dev = dev(app.path(), tmp.path(), &[]);
    assert!(!dev.wait(SOON).success());
    let out = dev.output();
    assert!(out.contains("no buildpack detected an app"), "{out}");
    // Each buildpack is listed, in detection order, with what it looks for.
    let rust = out.find("rust        looks for Cargo.toml").expect(&out);
    let wasm = out
        .find("wasm        looks for prebuilt components")
        .expect(&out);
    assert!(rust < wasm, "{out}");
    assert!(out.contains("--buildpack NAME|PATH"), "{out}");
}

#[test]
fn prebuilt_components_run_with_the_wasm_buildpack() {
    let app = tempfile::tempdir().unwrap();
    prebuilt_app(app.path());
    let tmp = tempfile::tempdir().unwrap();
    let mut dev = dev(app.path(), tmp.path(), &[]);
    let port = dev.port();
    assert!(dev.output().contains("-----> wasm app detected"));
    let (status, _) = get(&format!("http://127.0.0.1:{port}/greet"));
    assert_eq!(status, 200);
    dev.wait_for_text("app[worker.1]: tick", SOON);
    assert!(dev.interrupt(SOON).success());
}

#[test]
fn a_core_module_among_prebuilt_components_is_refused_by_name() {
    let app = tempfile::tempdir().unwrap();
    prebuilt_app(app.path());
    std::fs::write(app.path().join("old.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut dev = dev(app.path(), tmp.path(), &[]);
    assert!(!dev.wait(BUILD).success());
    let out = dev.output();
    assert!(
        out.contains("old.wasm is a core WebAssembly module, not a component"),
        "{out}"
    );
}

#[test]
fn buildpack_override_runs_a_third_party_buildpack_folder() {
    // A Cargo.toml would make the rust buildpack win detection: the override beats it.
    let app = tempfile::tempdir().unwrap();
    std::fs::write(app.path().join("Cargo.toml"), "not really rust").unwrap();
    std::fs::create_dir(app.path().join("dist")).unwrap();
    prebuilt_app(&app.path().join("dist"));
    std::fs::rename(
        app.path().join("dist/Procfile"),
        app.path().join("Procfile"),
    )
    .unwrap();
    let bp = tempfile::tempdir().unwrap();
    std::fs::create_dir(bp.path().join("bin")).unwrap();
    let script = |name: &str, text: &str| {
        use std::os::unix::fs::PermissionsExt;
        let path = bp.path().join("bin").join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    script("detect", "#!/bin/sh\nexit 1\n");
    script(
        "compile",
        "#!/bin/sh\nset -e\necho '-----> dist buildpack copying dist/'\ncp \"$1\"/dist/*.wasm \"$1\"/\n",
    );
    let tmp = tempfile::tempdir().unwrap();
    let mut dev = dev(
        app.path(),
        tmp.path(),
        &["--buildpack", bp.path().to_str().unwrap()],
    );
    let port = dev.port();
    let out = dev.output();
    assert!(out.contains("(--buildpack)"), "{out}");
    assert!(out.contains("-----> dist buildpack copying dist/"), "{out}");
    let (status, _) = get(&format!("http://127.0.0.1:{port}/greet"));
    assert_eq!(status, 200);
    assert!(dev.interrupt(SOON).success());

    // An unknown name is refused with the list of built-ins.
    let mut refused = crate::fixture::dev(app.path(), tmp.path(), &["--buildpack", "cobol"]);
    assert!(!refused.wait(SOON).success());
    let out = refused.output();
    assert!(out.contains("unknown buildpack `cobol`"), "{out}");
    assert!(out.contains("rust"), "{out}");
}

#[test]
fn an_unchanged_source_is_not_built_again_and_one_changed_file_rebuilds() {
    let app = copy_sample("hello");
    let tmp = tempfile::tempdir().unwrap();
    // Whether the buildpack ran is read from the output, never from timings.
    let run = |expect_cached: bool| {
        let mut dev = dev(app.path(), &tmp.path().join("run"), &[]);
        dev.port();
        assert!(dev.interrupt(SOON).success());
        let out = dev.output();
        assert_eq!(
            out.contains("-----> Build cached (no source change)"),
            expect_cached,
            "{out}"
        );
        assert_eq!(
            out.contains("-----> Building for wasm32-wasip2"),
            !expect_cached,
            "{out}"
        );
    };
    run(false);
    run(true);
    let web = app.path().join("src/web.rs");
    let text = std::fs::read_to_string(&web).unwrap();
    std::fs::write(&web, format!("{text}\n// edited\n")).unwrap();
    run(false);
    run(true);
}

#[test]
fn a_new_app_from_the_rust_template_deploys_and_answers() {
    let host = TestHost::start();
    let parent = tempfile::tempdir().unwrap();
    let new = |args: &[&str]| {
        wdeploy()
            .arg("new")
            .args(args)
            .current_dir(parent.path())
            .output()
            .expect("run wdeploy new")
    };
    let out = new(&["my-first-app"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.starts_with("Created my-first-app in my-first-app"),
        "{said}"
    );
    assert!(said.contains("wdeploy apps:create my-first-app"), "{said}");
    let dir = parent.path().join("my-first-app");
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("name = \"my-first-app\""), "{manifest}");

    host.create_and_push("my-first-app", &dir);
    assert_eq!(
        host.get("my-first-app", "/"),
        (200, "Hello from wdeploy\n".into())
    );

    // A directory with something in it is never written into.
    let out = new(&["my-first-app", "-t", "python"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("my-first-app exists and is not empty"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.join("requirements.txt").exists());
}
