//! Per-instance resource quotas, with a record of what was exceeded for the log.

use crate::guest::share::ShareSlot;
use wasmtime::ResourceLimiter;

/// Memory and table limits of one instance. Growing past the memory quota traps the
/// guest with [`MemoryQuotaExceeded`] (so it fails loudly instead of limping on a failed
/// `memory.grow`), which the platform logs as an R14-style line; growing past what its
/// app's instances may hold together traps with
/// [`AppMemoryExceeded`](crate::guest::share::AppMemoryExceeded) (R15).
#[derive(Debug)]
pub struct Quota {
    memory_bytes: usize,
    table_elements: usize,
    /// The instance's slot of its app's share, which also counts its app's memory.
    share: ShareSlot,
}

impl Quota {
    pub fn new(memory_bytes: usize, share: ShareSlot) -> Quota {
        Quota {
            memory_bytes,
            table_elements: 1 << 20,
            share,
        }
    }
}

/// The trap a guest gets when it grows past its memory quota.
#[derive(Debug, thiserror::Error)]
#[error("memory quota exceeded: tried to grow to {desired} bytes, quota {quota} bytes")]
pub struct MemoryQuotaExceeded {
    pub desired: usize,
    pub quota: usize,
}

impl ResourceLimiter for Quota {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            return Err(wasmtime::Error::new(MemoryQuotaExceeded {
                desired,
                quota: self.memory_bytes,
            }));
        }
        self.share
            .grow_memory(desired.saturating_sub(current))
            .map_err(wasmtime::Error::new)?;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.table_elements)
    }

    fn instances(&self) -> usize {
        64
    }

    fn tables(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        8
    }
}
