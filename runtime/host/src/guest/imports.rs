//! Whether a component imports only what this host provides, checked when a release is
//! loaded (so a push is refused before any dyno starts), with every missing import named.

use crate::guest::data::StoreData;
use crate::guest::engine::Engine;
use anyhow::bail;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, InstancePre, Linker, ResourceType};

/// Pre-instantiates `component` (the file `file`) against the host's linker. When its
/// imports do not link, the error names each import the host does not provide:
/// `component web.wasm imports wasi:foo/bar@1.0.0, which this host does not provide`.
pub fn instantiate_pre(
    engine: &Engine,
    component: &Component,
    file: &str,
) -> anyhow::Result<InstancePre<StoreData>> {
    let error = match engine.linker().instantiate_pre(component) {
        Ok(pre) => return Ok(pre),
        Err(e) => anyhow::Error::from(e),
    };
    let missing = unprovided_imports(engine, component);
    if missing.is_empty() {
        return Err(error.context(format!("component {file} cannot be linked")));
    }
    bail!(
        "component {file} imports {}, which this host does not provide",
        join_names(&missing)
    )
}

/// Every import of `component` the linker cannot satisfy, in the component's order.
///
/// The linker stops at the first import that fails, so each one found is stubbed out in a
/// scratch copy of the linker and the check runs again, until it passes.
fn unprovided_imports(engine: &Engine, component: &Component) -> Vec<String> {
    let ty = component.component_type();
    let imports: Vec<(String, ComponentItem)> = ty
        .imports(engine.wasmtime())
        .map(|(name, import)| (name.to_string(), import.ty))
        .collect();
    let mut probe = engine.linker().clone();
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
        if stub(&mut probe, engine, name, item).is_err() {
            break;
        }
    }
    missing
}

/// A stand-in for `name` that satisfies the type check (never called).
fn stub(
    probe: &mut Linker<StoreData>,
    engine: &Engine,
    name: &str,
    item: &ComponentItem,
) -> wasmtime::Result<()> {
    struct Stub;
    match item {
        ComponentItem::ComponentInstance(instance) => {
            let mut stubbed = probe.instance(name)?;
            for (export, item) in instance.exports(engine.wasmtime()) {
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
