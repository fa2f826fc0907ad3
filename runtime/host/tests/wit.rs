//! The WIT apps are written against (`wit/`, with its vendored deps) against what the host
//! implements: every import of the `web` and `worker` worlds must link in the host's
//! linker with the right types, the add-on interfaces must be the ones the host serves, a
//! component importing something else must be refused with the import named, and the
//! samples' vendored copies must match `wit/`. The Python buildpack's own worlds
//! (`buildpacks/python/py-worlds.wit`) are held to the same checks.
//!
//! The components here are generated from the worlds (a dummy core module per world,
//! wrapped by wit-component), so the check covers every function of every interface, not
//! just the ones a sample happens to call.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use wasmtime::component::Component;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wdeploy_host::{Engine, EngineOptions, Flavor};
use wit_parser::{LiftLowerAbi, ManglingAndAbi, PackageId, Resolve};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn platform() -> (Resolve, PackageId) {
    let mut resolve = Resolve::default();
    let (package, _) = resolve
        .push_dir(repo().join("wit"))
        .expect("wit/ parses with wit/deps");
    (resolve, package)
}

fn engine() -> std::sync::Arc<Engine> {
    Engine::new(&EngineOptions {
        max_instances: 8,
        max_memory_bytes: 64 << 20,
        ..EngineOptions::default()
    })
    .expect("engine")
}

/// A component of `world` that imports and exports exactly what the world says.
fn component_of(engine: &Engine, resolve: &Resolve, package: PackageId, world: &str) -> Component {
    let world = resolve
        .select_world(&[package], Some(world))
        .unwrap_or_else(|e| panic!("world {world}: {e}"));
    let mut module =
        wit_component::dummy_module(resolve, world, ManglingAndAbi::Legacy(LiftLowerAbi::Sync));
    wit_component::embed_component_metadata(
        &mut module,
        resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .expect("embed metadata");
    let bytes = wit_component::ComponentEncoder::default()
        .module(&module)
        .expect("dummy module")
        .validate(true)
        .encode()
        .expect("encode component");
    Component::new(engine.wasmtime(), &bytes).expect("compile component")
}

fn imports_of(resolve: &Resolve, package: PackageId, world: &str) -> BTreeSet<String> {
    let id = resolve.select_world(&[package], Some(world)).unwrap();
    resolve.worlds[id]
        .imports
        .keys()
        .map(|k| resolve.name_world_key(k))
        .collect()
}

#[test]
fn platform_worlds_resolve() {
    let (resolve, package) = platform();
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

#[test]
fn every_import_of_the_worlds_links_in_the_host() {
    let (resolve, package) = platform();
    let engine = engine();
    let web = component_of(&engine, &resolve, package, "web");
    let pre = wdeploy_host::instantiate_pre(&engine, &web, Flavor::Plain, "web.wasm")
        .unwrap_or_else(|e| panic!("{e:#}"));
    ProxyPre::new(pre).expect("web exports wasi:http/incoming-handler");
    let worker = component_of(&engine, &resolve, package, "worker");
    let pre = wdeploy_host::instantiate_pre(&engine, &worker, Flavor::Plain, "worker.wasm")
        .unwrap_or_else(|e| panic!("{e:#}"));
    CommandPre::new(pre).expect("worker exports wasi:cli/run");
}

#[test]
fn the_worlds_import_exactly_the_add_ons_the_host_serves() {
    let (resolve, package) = platform();
    let served: BTreeSet<String> = wdeploy_host::ADDON_INTERFACES
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(imports_of(&resolve, package, "addons"), served);
    for world in ["web", "worker"] {
        let imports = imports_of(&resolve, package, world);
        let missing: Vec<_> = served.difference(&imports).collect();
        assert!(missing.is_empty(), "{world} does not import {missing:?}");
    }
}

/// `wit/` with the Python buildpack's worlds beside `world.wit`, where the buildpack
/// writes them (they belong to its package), in a temp dir.
fn platform_with_python_worlds() -> (Resolve, PackageId, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files_under(&repo().join("wit")) {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    std::fs::copy(
        repo().join("buildpacks/python/py-worlds.wit"),
        dir.path().join("py-worlds.wit"),
    )
    .unwrap();
    let mut resolve = Resolve::default();
    let (package, _) = resolve
        .push_dir(dir.path())
        .expect("py-worlds.wit parses beside wit/world.wit");
    (resolve, package, dir)
}

#[test]
fn the_python_worlds_link_in_the_host_and_import_the_add_ons() {
    let (resolve, package, _dir) = platform_with_python_worlds();
    let engine = engine();
    let web = component_of(&engine, &resolve, package, "python-web");
    let pre = wdeploy_host::instantiate_pre(&engine, &web, Flavor::Plain, "web.wasm")
        .unwrap_or_else(|e| panic!("{e:#}"));
    ProxyPre::new(pre).expect("python-web exports wasi:http/incoming-handler");
    let worker = component_of(&engine, &resolve, package, "python-worker");
    let pre = wdeploy_host::instantiate_pre(&engine, &worker, Flavor::Plain, "worker.wasm")
        .unwrap_or_else(|e| panic!("{e:#}"));
    CommandPre::new(pre).expect("python-worker exports wasi:cli/run");

    for world in ["python-web", "python-worker"] {
        let imports = imports_of(&resolve, package, world);
        for addon in wdeploy_host::ADDON_INTERFACES {
            assert!(imports.contains(*addon), "{world} does not import {addon}");
        }
        // The point of these worlds: wasi:http/types is the only `types`, so
        // componentize-py names it `types` as in wasi:http/proxy.
        assert!(
            imports.contains("wasi:http/types@0.2.12"),
            "{world}: {imports:?}"
        );
        let others: Vec<_> = imports
            .iter()
            .filter(|i| i.ends_with("/types@0.2.12") && *i != "wasi:http/types@0.2.12")
            .collect();
        assert!(others.is_empty(), "{world} also imports {others:?}");
    }
}

#[test]
fn a_component_importing_what_the_host_lacks_is_refused_with_each_import_named() {
    let (mut resolve, _) = platform();
    let test = resolve
        .push_str(
            "stranger.wit",
            r#"
            package local:stranger;

            package wasi:foo@1.0.0 {
                interface bar {
                    ping: func() -> u32;
                }
            }

            package wdeploy:nowhere@0.1.0 {
                interface lost {
                    resource thing {
                        find: func() -> option<string>;
                    }
                }
            }

            world stranger {
                import wasi:cli/environment@0.2.12;
                import wasi:foo/bar@1.0.0;
                import wasi:keyvalue/store@0.2.0-draft;
                import wdeploy:nowhere/lost@0.1.0;
                export wasi:cli/run@0.2.12;
            }
            "#,
        )
        .expect("test WIT parses");
    let engine = engine();
    let component = component_of(&engine, &resolve, test, "stranger");
    let err = wdeploy_host::instantiate_pre(&engine, &component, Flavor::Plain, "stranger.wasm")
        .err()
        .expect("refused");
    assert_eq!(
        format!("{err:#}"),
        "component stranger.wasm imports wasi:foo/bar@1.0.0 and wdeploy:nowhere/lost@0.1.0, \
         which this host does not provide (this host serves WASI 0.2.x and WASI 0.3.0's cli, \
         clocks, random and http; build against one of those)"
    );
}

#[test]
fn samples_vendor_the_platform_wit_unchanged() {
    let platform = files_under(&repo().join("wit"));
    for sample in std::fs::read_dir(repo().join("samples")).unwrap() {
        let vendored = sample.unwrap().path().join("wit");
        if !vendored.is_dir() {
            continue;
        }
        let copy = files_under(&vendored);
        assert_eq!(
            copy.keys().collect::<Vec<_>>(),
            platform.keys().collect::<Vec<_>>(),
            "{} holds other files than wit/: copy wit/ there again",
            vendored.display()
        );
        for (name, text) in &platform {
            assert!(
                copy[name] == *text,
                "{}/{name} differs from wit/{name}: copy wit/ there again",
                vendored.display()
            );
        }
    }
}

/// Every file under `dir`, by path relative to it.
fn files_under(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut files = std::collections::BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let name = path.strip_prefix(dir).unwrap().display().to_string();
                files.insert(name, std::fs::read(&path).unwrap());
            }
        }
    }
    files
}
