//! Whether a component imports only what this host provides, checked when a release is
//! loaded (so a push is refused before any dyno starts), with every missing import named.

use crate::guest::data::StoreData;
use crate::guest::engine::{Engine, Flavor};
use anyhow::bail;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, InstancePre, Linker, ResourceType};

/// Pre-instantiates `component` (the file `file`) against the host's linker. When its
/// imports do not link, the error names each import the host does not provide:
/// `component web.wasm imports wasi:foo/bar@1.0.0, which this host does not provide`.
pub fn instantiate_pre(
    engine: &Engine,
    component: &Component,
    flavor: Flavor,
    file: &str,
) -> anyhow::Result<InstancePre<StoreData>> {
    let error = match engine.linker(flavor).instantiate_pre(component) {
        Ok(pre) => return Ok(pre),
        Err(e) => anyhow::Error::from(e),
    };
    let missing = unprovided_imports(engine, component, flavor);
    if missing.is_empty() {
        return Err(error.context(format!("component {file} cannot be linked")));
    }
    let wasi = if missing.iter().any(|name| name.starts_with("wasi:")) {
        // Most often a WASI version from a newer (or release-candidate) toolchain.
        format!(
            " (this host serves WASI 0.2.x and WASI 0.3.0's cli, clocks, random and http{}; build against one of those)",
            match flavor {
                Flavor::Plain => "",
                Flavor::Async => ", not its filesystem and sockets",
            }
        )
    } else {
        String::new()
    };
    bail!(
        "component {file} imports {}, which this host does not provide{wasi}",
        join_names(&missing)
    )
}

/// Every import of `component` the linker cannot satisfy, in the component's order.
///
/// The linker stops at the first import that fails, so each one found is stubbed out in a
/// scratch copy of the linker and the check runs again, until it passes.
fn unprovided_imports(engine: &Engine, component: &Component, flavor: Flavor) -> Vec<String> {
    let ty = component.component_type();
    let imports: Vec<(String, ComponentItem)> = ty
        .imports(engine.wasmtime_for(flavor))
        .map(|(name, import)| (name.to_string(), import.ty))
        .collect();
    let mut probe = engine.linker(flavor).clone();
    probe.allow_shadowing(true);
    let mut missing: Vec<String> = Vec::new();
    for _ in 0..imports.len() {
        let Err(e) = probe.instantiate_pre(component) else {
            break;
        };
        // The linker's message names the import: "component imports instance `NAME`, …".
        let message = e.to_string();
        let found = imports
            .iter()
            .find(|(name, _)| message.contains(&format!("`{name}`")));
        let Some((name, item)) = found else { break };
        if missing.contains(name) {
            break;
        }
        missing.push(name.clone());
        if stub(&mut probe, engine.wasmtime_for(flavor), name, item).is_err() {
            break;
        }
    }
    missing
}

/// A stand-in for `name` that satisfies the type check (never called).
fn stub(
    probe: &mut Linker<StoreData>,
    engine: &wasmtime::Engine,
    name: &str,
    item: &ComponentItem,
) -> wasmtime::Result<()> {
    struct Stub;
    match item {
        ComponentItem::ComponentInstance(instance) => {
            let mut stubbed = probe.instance(name)?;
            for (export, item) in instance.exports(engine) {
                match item.ty {
                    ComponentItem::ComponentFunc(_) => {
                        stubbed.func_new(export, |_, _, _, _| wasmtime::bail!("not provided"))?
                    }
                    ComponentItem::Resource(_) => {
                        stubbed.resource(export, ResourceType::host::<Stub>(), |_, _| Ok(()))?
                    }
                    _ => {}
                }
            }
            Ok(())
        }
        ComponentItem::ComponentFunc(_) => probe
            .root()
            .func_new(name, |_, _, _, _| wasmtime::bail!("not provided")),
        _ => wasmtime::bail!("cannot stub `{name}`"),
    }
}

/// `a`, `a and b`, `a, b and c`.
fn join_names(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}
