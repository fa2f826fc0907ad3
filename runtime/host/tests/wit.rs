//! The WIT package apps are written against parses, with its vendored WASI deps, and
//! declares the worlds the host runs.

#[test]
fn platform_worlds_resolve() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wit");
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve.push_dir(&dir).expect("wit/ parses with wit/deps");
    for world in ["web", "worker"] {
        let id = resolve
            .select_world(&[package], Some(world))
            .unwrap_or_else(|e| panic!("world {world}: {e}"));
        let exports: Vec<String> = resolve.worlds[id]
            .exports
            .keys()
            .map(|k| resolve.name_world_key(k))
            .collect();
        let expected = if world == "web" {
            "wasi:http/incoming-handler@0.2.12"
        } else {
            "wasi:cli/run@0.2.12"
        };
        assert!(
            exports.iter().any(|e| e == expected),
            "{world} exports {exports:?}"
        );
    }
}
