//! Whether the kernel may swap guest memory out, which decides how a freed pool slot
//! is reset.
//!
//! With `PAGEMAP_SCAN`, wasmtime 48 resets a freed slot by asking the kernel for the
//! pages the last instance wrote that are *present*, copying the image back over those
//! and decommitting only what lies past the scan's end. A written page that was swapped
//! out while its instance lived is not present: the scan passes over it and nothing
//! decommits it, so the next instance in that slot, whichever app it belongs to, reads
//! the previous instance's data back in from swap. (The test
//! `a_page_swapped_out_under_an_instance_never_reaches_the_next` shows it on a machine
//! with swap. wasmtime 50 scans swapped pages too, but it needs a newer rustc than this
//! project's, and built anyway it reset slots more slowly here: BENCHMARKS.md.)
//!
//! So the host uses the scan only where no guest page can be swapped out: no swap
//! device, or a cgroup that allows the host no swap. Elsewhere a freed slot is reset
//! the plain way (wasmtime writes the first `keep_resident` bytes back and decommits
//! the rest), which is slower for apps that take a fresh instance per request but
//! never hands one instance's memory to the next. The answer is taken once, when the
//! engine starts: enabling swap later needs a host restart (`wdeploy host` names the
//! plain reset among its start-up lines).

use std::path::{Path, PathBuf};

/// How a freed pool slot finds the memory its last instance wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotReset {
    /// Ask the kernel for the written pages (`PAGEMAP_SCAN`, where it has it) and copy
    /// the image back over just those.
    Scan,
    /// Write back the first `keep_resident` bytes and decommit the rest: the only safe
    /// way where guest pages can be swapped out (this module's doc).
    Plain,
}

impl SlotReset {
    /// The scan unless this host can swap guest memory out. `wdeploy host` tells the
    /// operator when it cannot scan (`Engine::slot_reset`); here it goes to the host's log.
    pub fn for_this_host() -> SlotReset {
        if possible() {
            tracing::info!(
                "swap is on: freed instance slots are reset without PAGEMAP_SCAN, because \
                 wasmtime 48's scan misses pages swapped out under a live instance"
            );
            SlotReset::Plain
        } else {
            tracing::info!(
                "no swap: freed instance slots are reset by PAGEMAP_SCAN where the kernel \
                 has it (a swap area enabled later needs a host restart)"
            );
            SlotReset::Scan
        }
    }
}

/// Whether this process's memory may be swapped out.
fn possible() -> bool {
    possible_under(Path::new("/"))
}

/// [`possible`] reading `proc` and `sys` under `root` (a test's fake tree).
fn possible_under(root: &Path) -> bool {
    // Unreadable: assume swap, the safe answer.
    let Ok(swaps) = std::fs::read_to_string(root.join("proc/swaps")) else {
        return true;
    };
    // The first line is the header; every further line is an active swap area.
    let active = swaps.lines().skip(1).any(|line| !line.trim().is_empty());
    active && !cgroup_denies_swap(root)
}

/// Whether the unified (v2) cgroup this process is in, or one above it, has
/// `memory.swap.max` at 0: then none of its pages can be swapped out, whatever swap the
/// machine has (a systemd unit with `MemorySwapMax=0`, a container without swap).
fn cgroup_denies_swap(root: &Path) -> bool {
    let Ok(membership) = std::fs::read_to_string(root.join("proc/self/cgroup")) else {
        return false;
    };
    // The v2 entry is `0::/path`; v1 controllers have their own lines and are not read.
    let Some(path) = membership.lines().find_map(|line| line.strip_prefix("0::")) else {
        return false;
    };
    // Where cgroup2 is mounted: alone, or beside v1 controllers (a "hybrid" machine).
    let mounts = [
        root.join("sys/fs/cgroup"),
        root.join("sys/fs/cgroup/unified"),
    ];
    mounts.iter().any(|mount| {
        let mut dir: PathBuf = mount.join(path.trim_start_matches('/'));
        loop {
            let limit = std::fs::read_to_string(dir.join("memory.swap.max"));
            if limit.is_ok_and(|limit| limit.trim() == "0") {
                return true;
            }
            if dir == *mount || !dir.pop() {
                return false;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::engine::{EngineOptions, pool};
    use wasmtime::{Config, Instance, InstanceAllocationStrategy, Module, Store};

    /// A fake root with `/proc/swaps`, the process's cgroup and the given
    /// `memory.swap.max` files (paths relative to the cgroup2 mount).
    fn tree(swaps: &str, cgroup: &str, mount: &str, limits: &[(&str, &str)]) -> tempfile::TempDir {
        let root = tempfile::tempdir().expect("tempdir");
        let write = |path: PathBuf, text: &str| {
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        };
        write(root.path().join("proc/swaps"), swaps);
        write(root.path().join("proc/self/cgroup"), cgroup);
        for (dir, limit) in limits {
            write(
                root.path().join(mount).join(dir).join("memory.swap.max"),
                limit,
            );
        }
        root
    }

    const HEADER: &str = "Filename\tType\tSize\tUsed\tPriority\n";
    const ONE_AREA: &str =
        "Filename\tType\tSize\tUsed\tPriority\n/swapfile   file  524284  0  -2\n";

    #[test]
    fn no_swap_area_means_no_swap() {
        let root = tree(HEADER, "0::/\n", "sys/fs/cgroup", &[]);
        assert!(!possible_under(root.path()));
    }

    #[test]
    fn a_swap_area_means_swap_unless_a_cgroup_forbids_it() {
        let cgroup = "0::/system.slice/wdeploy.service\n";
        let free = tree(ONE_AREA, cgroup, "sys/fs/cgroup", &[]);
        assert!(possible_under(free.path()));

        let capped = [("system.slice/wdeploy.service", "max\n")];
        let capped = tree(ONE_AREA, cgroup, "sys/fs/cgroup", &capped);
        assert!(possible_under(capped.path()), "`max` allows swap");

        let own = [("system.slice/wdeploy.service", "0\n")];
        let own = tree(ONE_AREA, cgroup, "sys/fs/cgroup", &own);
        assert!(!possible_under(own.path()));

        let parent = [
            ("system.slice/wdeploy.service", "max\n"),
            ("system.slice", "0\n"),
        ];
        let parent = tree(ONE_AREA, cgroup, "sys/fs/cgroup", &parent);
        assert!(
            !possible_under(parent.path()),
            "a parent's 0 holds for its children"
        );
    }

    #[test]
    fn a_hybrid_machines_unified_mount_is_read_and_v1_lines_are_not() {
        let cgroup = "4:memory:/jail\n0::/jail\n";
        let root = tree(ONE_AREA, cgroup, "sys/fs/cgroup/unified", &[("jail", "0")]);
        assert!(!possible_under(root.path()));

        let v1_only = tree(
            ONE_AREA,
            "4:memory:/jail\n",
            "sys/fs/cgroup",
            &[("jail", "0")],
        );
        assert!(
            possible_under(v1_only.path()),
            "a v1-only machine's limits are not read"
        );
    }

    #[test]
    fn an_unreadable_swap_list_counts_as_swap() {
        let root = tempfile::tempdir().expect("tempdir");
        assert!(possible_under(root.path()));
    }

    /// A module with one memory, a small image, and a store and a load.
    fn module(engine: &wasmtime::Engine, image: &str) -> Module {
        let wat = format!(
            r#"(module
                (memory (export "m") 32)
                (data (i32.const 0) "{image}")
                (func (export "store") (param i32 i32) (i32.store (local.get 0) (local.get 1)))
                (func (export "load") (param i32) (result i32) (i32.load (local.get 0))))"#
        );
        Module::new(engine, wat).expect("module")
    }

    fn page_size() -> usize {
        // SAFETY: sysconf only reads a system constant.
        usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).expect("page size")
    }

    /// The pool's reset follows the decision, whatever this machine's swap: the leak
    /// test below checks the outcome only where pages can be swapped out.
    #[test]
    fn the_pool_scans_only_when_told_to() {
        let options = EngineOptions::default();
        let scan = pool(&options, SlotReset::Scan).get_pagemap_scan();
        assert_eq!(scan, wasmtime::Enabled::Auto);
        let plain = pool(&options, SlotReset::Plain).get_pagemap_scan();
        assert_eq!(plain, wasmtime::Enabled::No);
    }

    /// Whether the page holding `addr` is in swap (bit 62 of its `/proc/self/pagemap`
    /// entry, which needs no privilege).
    fn swapped(addr: usize) -> bool {
        use std::os::unix::fs::FileExt;
        let mut entry = [0u8; 8];
        let pagemap = std::fs::File::open("/proc/self/pagemap").expect("pagemap");
        pagemap
            .read_exact_at(&mut entry, (addr / page_size() * 8) as u64)
            .expect("pagemap entry");
        u64::from_le_bytes(entry) & (1 << 62) != 0
    }

    #[test]
    fn a_page_swapped_out_under_an_instance_never_reaches_the_next() {
        let options = EngineOptions {
            max_instances: 1,
            ..EngineOptions::default()
        };
        let mut config = Config::new();
        config
            .memory_init_cow(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool(
                &options,
                SlotReset::for_this_host(),
            )));
        let engine = wasmtime::Engine::new(&config).expect("engine");
        let (first, second) = (module(&engine, "first"), module(&engine, "second"));
        // One address inside the part of the slot kept resident, one past it.
        let addrs = [
            5 * 65536 + 3 * 4096,
            (options.keep_resident_bytes + 65536) as i32,
        ];
        {
            let mut store = Store::new(&engine, ());
            let instance = Instance::new(&mut store, &first, &[]).expect("first instance");
            let put = instance
                .get_typed_func::<(i32, i32), ()>(&mut store, "store")
                .expect("store");
            for addr in addrs {
                put.call(&mut store, (addr, 0x5ec2e7)).expect("store");
            }
            let base = instance
                .get_memory(&mut store, "m")
                .expect("memory")
                .data_ptr(&store) as usize;
            for addr in addrs {
                let page = (base + addr as usize) & !(page_size() - 1);
                // SAFETY: the page is inside this instance's live linear memory, and
                // MADV_PAGEOUT only moves its contents, never changes them.
                let rc = unsafe {
                    libc::madvise(page as *mut libc::c_void, page_size(), libc::MADV_PAGEOUT)
                };
                assert_eq!(rc, 0, "madvise(MADV_PAGEOUT)");
            }
            if !addrs.iter().all(|&addr| swapped(base + addr as usize)) {
                eprintln!("this machine swapped nothing out (no swap area): nothing to check");
                return;
            }
        }
        // Another module in the same (only) slot, as another app would get it.
        let mut store = Store::new(&engine, ());
        let instance = Instance::new(&mut store, &second, &[]).expect("second instance");
        let get = instance
            .get_typed_func::<i32, i32>(&mut store, "load")
            .expect("load");
        for addr in addrs {
            assert_eq!(get.call(&mut store, addr).expect("load"), 0, "at {addr:#x}");
        }
    }
}
