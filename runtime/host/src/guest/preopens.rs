//! `wasi:filesystem/preopens`: the dyno's directory, made when the guest first asks for
//! it.
//!
//! A dyno's ephemeral filesystem is a directory of the host's disk. Making it on every
//! dyno's first instance was the largest single cost of waking an idle app after a
//! restart: two `mkdir`s on ext4, 15–18 % of the lane's CPU in a storm of wake-ups
//! (BENCHMARKS.md). Most web apps never open a file. So an instance gets no preopen from
//! wasmtime-wasi's context; this implementation, linked over wasmtime-wasi's, makes the
//! directory (once per dyno) and opens it when `get-directories` is called, which
//! wasi-libc does at the guest's first path operation. A guest that never touches its
//! filesystem costs no directory, and its dyno removes none.

use crate::guest::data::StoreData;
use crate::guest::disk::DiskQuota;
use anyhow::Context;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use wasmtime::component::{HasData, Linker, Resource};
use wasmtime_wasi::filesystem::{Descriptor, Dir};
use wasmtime_wasi::p2::bindings::filesystem::preopens;
use wasmtime_wasi::{FsPerms, OpenMode};

/// The directory an instance sees as `/`, made by the first call of [`Self::made`]
/// (a dyno's [ephemeral filesystem](crate::dyno::ephemeral)), and what may be written
/// into it.
pub trait LazyRoot: Send + Sync {
    /// The directory, made now if it was not yet.
    fn made(&self) -> anyhow::Result<&Path>;
    /// The directory's disk quota, shared by every instance of the dyno.
    fn quota(&self) -> &Arc<DiskQuota>;
}

/// An instance's root: where it is made, and the directory once opened.
pub struct Root {
    lazy: Arc<dyn LazyRoot>,
    opened: Option<Dir>,
}

impl Root {
    pub fn new(lazy: Arc<dyn LazyRoot>) -> Root {
        Root { lazy, opened: None }
    }

    /// The directory opened for the guest, made and opened at the first call.
    fn dir(&mut self) -> anyhow::Result<Dir> {
        if let Some(dir) = &self.opened {
            return Ok(dir.clone());
        }
        let path = self.lazy.made()?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(path)
            .with_context(|| format!("opening the dyno filesystem at {}", path.display()))?;
        let dir = Dir::new(
            file,
            FsPerms::ReadWrite,
            OpenMode::READ | OpenMode::WRITE,
            false,
        );
        self.opened = Some(dir.clone());
        Ok(dir)
    }
}

/// Links `wasi:filesystem/preopens` over wasmtime-wasi's, which must be in `linker`
/// already.
pub fn add_to_linker(linker: &mut Linker<StoreData>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let linked = preopens::add_to_linker::<StoreData, Preopens>(linker, |data| data);
    linker.allow_shadowing(false);
    linked
}

struct Preopens;

impl HasData for Preopens {
    type Data<'a> = &'a mut StoreData;
}

impl preopens::Host for &mut StoreData {
    fn get_directories(&mut self) -> wasmtime::Result<Vec<(Resource<Descriptor>, String)>> {
        // A directory that cannot be made (the host's disk full) traps the guest, as a
        // failed preopen failed its instantiation before.
        let dir = self
            .root
            .dir()
            .map_err(|e| wasmtime::Error::msg(format!("{e:#}")))?;
        let fd = self.table.push(Descriptor::Dir(dir))?;
        Ok(vec![(fd, "/".to_owned())])
    }
}
