//! Whether the kernel may swap guest memory out, which decides how a freed pool slot
//! is reset.
//!
//! With `PAGEMAP_SCAN`, wasmtime 48 resets a freed slot by asking the kernel for the
//! pages the last instance wrote that are *present*, copying the image back over those
//! and decommitting only what lies past the scan's end. A written page that was swapped
//! out while its instance lived is not present: the scan passes over it and nothing
//! decommits it, so the next instance in that slot, whichever app it belongs to, reads
//! the previous instance's data back in from swap. (The engine test
//! `a_page_swapped_out_under_an_instance_never_reaches_the_next` shows it on a machine
//! with swap; wasmtime 50 scans for swapped pages too, but needs a newer rustc than this
//! project's.)
//!
//! So the host uses the scan only where no guest page can be swapped out: no swap
//! device, or a cgroup that allows the host no swap. Elsewhere a freed slot is reset
//! the plain way (wasmtime writes the first `keep_resident` bytes back and decommits
//! the rest), which is slower for apps that take a fresh instance per request but
//! never hands one instance's memory to the next. The answer is taken once, when the
//! engine starts: enabling swap later needs a host restart, which the host's log says.

use std::path::{Path, PathBuf};

/// Whether this process's memory may be swapped out.
pub fn possible() -> bool {
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
}
