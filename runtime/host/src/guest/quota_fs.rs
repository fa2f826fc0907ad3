//! `wasi:filesystem/types` with a disk quota: wasmtime-wasi's implementation, wrapped so
//! that everything that can grow a dyno's directory is charged to its [`DiskQuota`] first.
//!
//! wasmtime-wasi writes files directly, with no hook for a quota, and a dyno's directory
//! is a plain directory of the host's disk. So the host links this implementation over
//! wasmtime-wasi's (same resources, same table): every call is delegated, and `write`,
//! `set-size`, `open-at` with `create`, `create-directory-at`, `link-at`, `symlink-at`
//! and the output streams of `write-via-stream`/`append-via-stream` (how wasi-libc, and
//! so Rust's std, writes files) reserve their growth before it happens. A write that does
//! not fit fails as on a full disk: `error-code::insufficient-space` (ENOSPC), and nothing
//! of it reaches the disk.

use crate::guest::data::StoreData;
use crate::guest::disk::{DiskQuota, ENTRY_BYTES, block_bound, block_span, disk_full};
use bytes::Bytes;
use std::sync::Arc;
use wasmtime::component::{HasData, Linker, Resource};
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemCtxView};
use wasmtime_wasi::p2::bindings::filesystem::types::{
    self, ErrorCode, HostDescriptor, HostDirectoryEntryStream,
};
use wasmtime_wasi::p2::{DynOutputStream, FsError, FsResult, OutputStream, Pollable};
use wasmtime_wasi::p2::{StreamError, StreamResult};

/// Links the quota-checked `wasi:filesystem/types` over wasmtime-wasi's, which must be
/// in `linker` already (its `preopens` hands out the descriptors this one serves).
pub fn add_to_linker(linker: &mut Linker<StoreData>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let linked = types::add_to_linker::<StoreData, QuotaFilesystem>(linker, |data| QuotaFsView {
        fs: WasiFilesystemCtxView {
            ctx: data.wasi.filesystem(),
            table: &mut data.table,
        },
        disk: &data.disk,
    });
    linker.allow_shadowing(false);
    linked
}

struct QuotaFilesystem;

impl HasData for QuotaFilesystem {
    type Data<'a> = QuotaFsView<'a>;
}

/// wasmtime-wasi's view of an instance's filesystem, and its dyno's quota.
struct QuotaFsView<'a> {
    fs: WasiFilesystemCtxView<'a>,
    disk: &'a Arc<DiskQuota>,
}

fn full() -> FsError {
    ErrorCode::InsufficientSpace.into()
}

/// Charges `bytes` of growth to the dyno, or fails as a full disk.
async fn reserve(disk: &DiskQuota, bytes: u64) -> FsResult<()> {
    disk.reserve(bytes).await.map_err(|_| full())
}

/// A file's length now (measured off the async thread).
async fn file_len(file: Arc<std::fs::File>) -> FsResult<u64> {
    let len = tokio::task::spawn_blocking(move || file.metadata().map(|m| m.len()))
        .await
        .map_err(|_| ErrorCode::Io)?
        .map_err(ErrorCode::from)?;
    Ok(len)
}

impl QuotaFsView<'_> {
    fn file(&self, fd: &Resource<types::Descriptor>) -> FsResult<Arc<std::fs::File>> {
        match self.fs.table.get(fd)? {
            Descriptor::File(f) => Ok(f.file.clone()),
            Descriptor::Dir(_) => Err(ErrorCode::BadDescriptor.into()),
        }
    }

    /// Replaces the stream at `stream` in the table by one that charges its writes.
    fn wrap_stream(
        &mut self,
        stream: Resource<DynOutputStream>,
        position: Option<u64>,
    ) -> FsResult<Resource<DynOutputStream>> {
        let inner = self.fs.table.delete(stream)?;
        let wrapped: DynOutputStream = Box::new(QuotaOutputStream {
            inner,
            disk: self.disk.clone(),
            position,
        });
        Ok(self.fs.table.push(wrapped)?)
    }
}

impl types::Host for QuotaFsView<'_> {
    fn convert_error_code(&mut self, err: FsError) -> wasmtime::Result<ErrorCode> {
        types::Host::convert_error_code(&mut self.fs, err)
    }

    fn filesystem_error_code(
        &mut self,
        err: Resource<wasmtime::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        types::Host::filesystem_error_code(&mut self.fs, err)
    }
}

impl HostDescriptor for QuotaFsView<'_> {
    async fn advise(
        &mut self,
        fd: Resource<types::Descriptor>,
        offset: types::Filesize,
        len: types::Filesize,
        advice: types::Advice,
    ) -> FsResult<()> {
        self.fs.advise(fd, offset, len, advice).await
    }

    async fn sync_data(&mut self, fd: Resource<types::Descriptor>) -> FsResult<()> {
        self.fs.sync_data(fd).await
    }

    async fn get_flags(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<types::DescriptorFlags> {
        self.fs.get_flags(fd).await
    }

    async fn get_type(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<types::DescriptorType> {
        self.fs.get_type(fd).await
    }

    /// Growing a file is charged in full (a filesystem without holes would allocate it);
    /// shrinking it may free space.
    async fn set_size(
        &mut self,
        fd: Resource<types::Descriptor>,
        size: types::Filesize,
    ) -> FsResult<()> {
        let len = file_len(self.file(&fd)?).await?;
        if size > len {
            reserve(self.disk, size - len).await?;
        } else {
            self.disk.note_change();
        }
        self.fs.set_size(fd, size).await
    }

    async fn set_times(
        &mut self,
        fd: Resource<types::Descriptor>,
        atim: types::NewTimestamp,
        mtim: types::NewTimestamp,
    ) -> FsResult<()> {
        self.fs.set_times(fd, atim, mtim).await
    }

    async fn read(
        &mut self,
        fd: Resource<types::Descriptor>,
        len: types::Filesize,
        offset: types::Filesize,
    ) -> FsResult<(Vec<u8>, bool)> {
        self.fs.read(fd, len, offset).await
    }

    async fn write(
        &mut self,
        fd: Resource<types::Descriptor>,
        buf: Vec<u8>,
        offset: types::Filesize,
    ) -> FsResult<types::Filesize> {
        reserve(self.disk, block_span(offset, buf.len() as u64)).await?;
        self.fs.write(fd, buf, offset).await
    }

    async fn read_directory(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<Resource<types::DirectoryEntryStream>> {
        self.fs.read_directory(fd).await
    }

    async fn sync(&mut self, fd: Resource<types::Descriptor>) -> FsResult<()> {
        self.fs.sync(fd).await
    }

    async fn create_directory_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path: String,
    ) -> FsResult<()> {
        reserve(self.disk, ENTRY_BYTES).await?;
        self.fs.create_directory_at(fd, path).await
    }

    async fn stat(&mut self, fd: Resource<types::Descriptor>) -> FsResult<types::DescriptorStat> {
        self.fs.stat(fd).await
    }

    async fn stat_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: types::PathFlags,
        path: String,
    ) -> FsResult<types::DescriptorStat> {
        self.fs.stat_at(fd, path_flags, path).await
    }

    async fn set_times_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: types::PathFlags,
        path: String,
        atim: types::NewTimestamp,
        mtim: types::NewTimestamp,
    ) -> FsResult<()> {
        self.fs.set_times_at(fd, path_flags, path, atim, mtim).await
    }

    async fn link_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        old_path_flags: types::PathFlags,
        old_path: String,
        new_descriptor: Resource<types::Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        reserve(self.disk, ENTRY_BYTES).await?;
        self.fs
            .link_at(fd, old_path_flags, old_path, new_descriptor, new_path)
            .await
    }

    /// Creating a file costs an entry; truncating one may free space.
    async fn open_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: types::PathFlags,
        path: String,
        oflags: types::OpenFlags,
        flags: types::DescriptorFlags,
    ) -> FsResult<Resource<types::Descriptor>> {
        if oflags.contains(types::OpenFlags::CREATE) {
            reserve(self.disk, ENTRY_BYTES).await?;
        }
        if oflags.contains(types::OpenFlags::TRUNCATE) {
            self.disk.note_change();
        }
        self.fs.open_at(fd, path_flags, path, oflags, flags).await
    }

    fn drop(&mut self, fd: Resource<types::Descriptor>) -> wasmtime::Result<()> {
        HostDescriptor::drop(&mut self.fs, fd)
    }

    async fn readlink_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path: String,
    ) -> FsResult<String> {
        self.fs.readlink_at(fd, path).await
    }

    async fn remove_directory_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path: String,
    ) -> FsResult<()> {
        let removed = self.fs.remove_directory_at(fd, path).await;
        self.disk.note_change();
        removed
    }

    async fn rename_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        old_path: String,
        new_fd: Resource<types::Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        let renamed = self.fs.rename_at(fd, old_path, new_fd, new_path).await;
        // Renaming over a file removes it.
        self.disk.note_change();
        renamed
    }

    async fn symlink_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        src_path: String,
        dest_path: String,
    ) -> FsResult<()> {
        reserve(self.disk, ENTRY_BYTES.saturating_add(src_path.len() as u64)).await?;
        self.fs.symlink_at(fd, src_path, dest_path).await
    }

    async fn unlink_file_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path: String,
    ) -> FsResult<()> {
        let unlinked = self.fs.unlink_file_at(fd, path).await;
        self.disk.note_change();
        unlinked
    }

    fn read_via_stream(
        &mut self,
        fd: Resource<types::Descriptor>,
        offset: types::Filesize,
    ) -> FsResult<Resource<wasmtime_wasi::p2::DynInputStream>> {
        self.fs.read_via_stream(fd, offset)
    }

    fn write_via_stream(
        &mut self,
        fd: Resource<types::Descriptor>,
        offset: types::Filesize,
    ) -> FsResult<Resource<DynOutputStream>> {
        let stream = self.fs.write_via_stream(fd, offset)?;
        self.wrap_stream(stream, Some(offset))
    }

    fn append_via_stream(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<Resource<DynOutputStream>> {
        let stream = self.fs.append_via_stream(fd)?;
        self.wrap_stream(stream, None)
    }

    async fn is_same_object(
        &mut self,
        a: Resource<types::Descriptor>,
        b: Resource<types::Descriptor>,
    ) -> wasmtime::Result<bool> {
        self.fs.is_same_object(a, b).await
    }

    async fn metadata_hash(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<types::MetadataHashValue> {
        self.fs.metadata_hash(fd).await
    }

    async fn metadata_hash_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: types::PathFlags,
        path: String,
    ) -> FsResult<types::MetadataHashValue> {
        self.fs.metadata_hash_at(fd, path_flags, path).await
    }
}

impl HostDirectoryEntryStream for QuotaFsView<'_> {
    async fn read_directory_entry(
        &mut self,
        stream: Resource<types::DirectoryEntryStream>,
    ) -> FsResult<Option<types::DirectoryEntry>> {
        self.fs.read_directory_entry(stream).await
    }

    fn drop(&mut self, stream: Resource<types::DirectoryEntryStream>) -> wasmtime::Result<()> {
        HostDirectoryEntryStream::drop(&mut self.fs, stream)
    }
}

/// A file's output stream whose writes are charged to the dyno's quota before they are
/// handed to wasmtime-wasi's stream.
struct QuotaOutputStream {
    inner: DynOutputStream,
    disk: Arc<DiskQuota>,
    /// Where the next write lands, for a stream at an offset; `None` when appending
    /// (charged by the worst case, as the end of the file moves).
    position: Option<u64>,
}

/// Below this many bytes of room, `check-write` permits nothing: a write of `n` bytes is
/// charged up to `n` plus two blocks.
const WRITE_SLACK: u64 = 2 * crate::guest::disk::BLOCK_BYTES;

/// The stream error a write that does not fit gets; `filesystem-error-code` turns it
/// into `insufficient-space`.
fn stream_full() -> StreamError {
    StreamError::LastOperationFailed(wasmtime::Error::from(disk_full()))
}

impl QuotaOutputStream {
    fn charge_for(&self, len: u64) -> u64 {
        match self.position {
            Some(position) => block_span(position, len),
            None => block_bound(len),
        }
    }

    fn advance(&mut self, len: u64) {
        if let Some(position) = &mut self.position {
            *position = position.saturating_add(len);
        }
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for QuotaOutputStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        let len = bytes.len() as u64;
        if !self.disk.try_charge(self.charge_for(len)) {
            return Err(stream_full());
        }
        self.inner.write(bytes)?;
        self.advance(len);
        Ok(())
    }

    /// wasi-libc's (and so Rust std's) way of writing a file: reserve (measuring the
    /// directory again if needed), then wasmtime-wasi's own fast path.
    async fn blocking_write_and_flush(&mut self, bytes: Bytes) -> StreamResult<()> {
        let len = bytes.len() as u64;
        if self.disk.reserve(self.charge_for(len)).await.is_err() {
            return Err(stream_full());
        }
        self.inner.blocking_write_and_flush(bytes).await?;
        self.advance(len);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.inner.flush()
    }

    /// What the inner stream accepts, within the room left. With no room left, a full
    /// disk, unless the tree changed since it was last measured: then nothing for now,
    /// and `ready` measures it again.
    fn check_write(&mut self) -> StreamResult<usize> {
        let permitted = self.inner.check_write()?;
        if permitted == 0 {
            return Ok(0);
        }
        let room = self.disk.remaining().saturating_sub(WRITE_SLACK);
        if room == 0 {
            return if self.disk.changed() {
                Ok(0)
            } else {
                Err(stream_full())
            };
        }
        Ok(permitted.min(usize::try_from(room).unwrap_or(usize::MAX)))
    }

    fn write_zeroes(&mut self, nelem: usize) -> StreamResult<()> {
        let len = nelem as u64;
        if !self.disk.try_charge(self.charge_for(len)) {
            return Err(stream_full());
        }
        self.inner.write_zeroes(nelem)?;
        self.advance(len);
        Ok(())
    }

    async fn cancel(&mut self) {
        self.inner.cancel().await
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for QuotaOutputStream {
    /// Ready when the inner stream is; near the quota, after measuring the directory
    /// again (if it changed), so `check-write` then tells room from a full disk.
    async fn ready(&mut self) {
        self.inner.ready().await;
        if self.disk.remaining() <= WRITE_SLACK + (64 << 10) {
            self.disk.rescan().await;
        }
    }
}
