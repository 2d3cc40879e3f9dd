//! `wasi:filesystem` with disk quotas: wasmtime-wasi's implementation, with
//! every operation that can grow a quota'd directory asked of its
//! [`DiskQuota`] first.
//!
//! It is linked over wasmtime-wasi's own `wasi:filesystem/types` and
//! `preopens` (shadowing them), once per engine. A task's store says which
//! preopens carry a quota; descriptors opened beneath one inherit it, so the
//! check follows the guest through the tree. Everything else is delegated
//! unchanged, so path resolution and permissions stay wasmtime-wasi's.
//!
//! A quota'd tree behaves like a filesystem of its own: renames and hard links
//! between it and another preopen fail with `cross-device`, the way they would
//! across mounts (tools fall back to copying, which is counted).

use super::host::{EventSink, LogLevel, ToolEvent};
use super::quota::{DiskQuota, InodeKey, QuotaExceeded, Reservation};
use super::state::TaskState;
use bytes::Bytes;
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use wasmtime::component::{HasData, Linker, Resource};
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemCtxView};
use wasmtime_wasi::p2::bindings::filesystem::{preopens, types};
use wasmtime_wasi::p2::{
    DynOutputStream, FsError, FsResult, OutputStream, Pollable, StreamError, StreamResult,
};
use wasmtime_wasi::{OpenMode, ResourceTable};

/// The quotas of one task: which preopens carry one, and which open descriptors
/// lie beneath them.
#[derive(Default)]
pub(crate) struct DiskState {
    /// Guest path of a preopen → its quota.
    preopens: Vec<(String, DiskQuota)>,
    /// Descriptor (table index) → the quota it is beneath.
    tracked: HashMap<u32, DiskQuota>,
    notice: QuotaNotice,
}

impl DiskState {
    pub(crate) fn new(
        preopens: Vec<(String, DiskQuota)>,
        events: Option<Arc<dyn EventSink>>,
    ) -> Self {
        Self {
            preopens,
            tracked: HashMap::new(),
            notice: QuotaNotice(Arc::new(Notice {
                events,
                told: AtomicBool::new(false),
            })),
        }
    }
}

/// Tells the task's event stream, once, that the quota refused a write: libc
/// reports a failed stream write as a bare EIO, so the tool may not say why.
#[derive(Clone, Default)]
struct QuotaNotice(Arc<Notice>);

#[derive(Default)]
struct Notice {
    events: Option<Arc<dyn EventSink>>,
    told: AtomicBool,
}

impl QuotaNotice {
    fn refused(&self, error: QuotaExceeded) -> QuotaExceeded {
        tracing::debug!(%error, "write refused by the disk quota");
        if let Some(events) = &self.0.events
            && !self.0.told.swap(true, Ordering::Relaxed)
        {
            events.emit(ToolEvent::Log {
                level: LogLevel::Warn,
                message: format!("{error}; the write failed with insufficient-space"),
            });
        }
        error
    }
}

/// Links the quota-aware filesystem over wasmtime-wasi's (call after it).
pub(crate) fn add_to_linker(linker: &mut Linker<TaskState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    types::add_to_linker::<TaskState, QuotaFs>(linker, view)?;
    preopens::add_to_linker::<TaskState, QuotaFs>(linker, view)?;
    linker.allow_shadowing(false);
    Ok(())
}

fn view(state: &mut TaskState) -> QuotaFsView<'_> {
    QuotaFsView {
        fs: WasiFilesystemCtxView {
            ctx: state.wasi.filesystem(),
            table: &mut state.table,
        },
        disk: &mut state.disk,
    }
}

struct QuotaFs;

impl HasData for QuotaFs {
    type Data<'a> = QuotaFsView<'a>;
}

struct QuotaFsView<'a> {
    fs: WasiFilesystemCtxView<'a>,
    disk: &'a mut DiskState,
}

fn no_space(_: QuotaExceeded) -> FsError {
    types::ErrorCode::InsufficientSpace.into()
}

fn io_error(error: std::io::Error) -> FsError {
    types::ErrorCode::from(&error).into()
}

/// The inode and size of an open file.
fn inode(file: &std::fs::File) -> std::io::Result<(InodeKey, u64)> {
    let meta = file.metadata()?;
    Ok(((meta.dev(), meta.ino()), meta.len()))
}

/// An entry found by [`stat_at`].
struct Existing {
    key: InodeKey,
    size: u64,
    links: u64,
}

/// What is at `path` beneath `dir`, without following a final symlink (resolved
/// the capability way, like the operation it accompanies).
fn stat_at(dir: &std::fs::File, path: &str) -> Option<Existing> {
    use cap_primitives::fs::{FollowSymlinks, MetadataExt as _, stat};
    let meta = stat(dir, Path::new(path), FollowSymlinks::No).ok()?;
    let is_dir = meta.is_dir();
    Some(Existing {
        key: (meta.dev(), meta.ino()),
        // Directories and links cost one block whatever they report.
        size: if meta.is_file() { meta.len() } else { 0 },
        // A directory's link count counts its children; removing it frees it.
        links: if is_dir { 1 } else { meta.nlink() },
    })
}

impl QuotaFsView<'_> {
    fn quota(&self, fd: &Resource<Descriptor>) -> Option<DiskQuota> {
        self.disk.tracked.get(&fd.rep()).cloned()
    }

    fn file(&self, fd: &Resource<Descriptor>) -> Option<Arc<std::fs::File>> {
        match self.fs.table.get(fd).ok()? {
            Descriptor::File(f) => Some(f.file.clone()),
            Descriptor::Dir(_) => None,
        }
    }

    /// A file that this task may write through (otherwise the write is left to
    /// wasmtime-wasi to refuse, and nothing is charged).
    fn writable_file(&self, fd: &Resource<Descriptor>) -> Option<Arc<std::fs::File>> {
        match self.fs.table.get(fd).ok()? {
            Descriptor::File(f)
                if !f.perms.write_not_permitted() && f.open_mode.contains(OpenMode::WRITE) =>
            {
                Some(f.file.clone())
            }
            _ => None,
        }
    }

    fn dir(&self, fd: &Resource<Descriptor>) -> Option<Arc<std::fs::File>> {
        match self.fs.table.get(fd).ok()? {
            Descriptor::Dir(d) => Some(d.dir.clone()),
            Descriptor::File(_) => None,
        }
    }

    /// The quota shared by two directories of a rename or link; an operation
    /// between a quota'd tree and anything else is cross-device.
    fn shared_quota(
        &self,
        a: &Resource<Descriptor>,
        b: &Resource<Descriptor>,
    ) -> FsResult<Option<DiskQuota>> {
        match (self.quota(a), self.quota(b)) {
            (None, None) => Ok(None),
            (Some(x), Some(y)) if x == y => Ok(Some(x)),
            _ => Err(types::ErrorCode::CrossDevice.into()),
        }
    }
}

/// After an entry was created at `path` beneath `dir`: its reserved block becomes its charge.
fn settle(reservation: Reservation, dir: Option<Arc<std::fs::File>>, path: &str) {
    match dir.and_then(|dir| stat_at(&dir, path)) {
        Some(entry) => reservation.settle(entry.key, entry.size),
        // Already gone again: nothing to charge.
        None => drop(reservation),
    }
}

impl preopens::Host for QuotaFsView<'_> {
    fn get_directories(&mut self) -> wasmtime::Result<Vec<(Resource<Descriptor>, String)>> {
        let dirs = preopens::Host::get_directories(&mut self.fs)?;
        for (fd, name) in &dirs {
            if let Some((_, quota)) = self.disk.preopens.iter().find(|(guest, _)| guest == name) {
                self.disk.tracked.insert(fd.rep(), quota.clone());
            }
        }
        Ok(dirs)
    }
}

impl types::Host for QuotaFsView<'_> {
    fn convert_error_code(&mut self, err: FsError) -> wasmtime::Result<types::ErrorCode> {
        types::Host::convert_error_code(&mut self.fs, err)
    }

    fn filesystem_error_code(
        &mut self,
        err: Resource<wasmtime::Error>,
    ) -> wasmtime::Result<Option<types::ErrorCode>> {
        types::Host::filesystem_error_code(&mut self.fs, err)
    }
}

type Fd = Resource<types::Descriptor>;

impl types::HostDescriptor for QuotaFsView<'_> {
    async fn advise(
        &mut self,
        fd: Fd,
        offset: types::Filesize,
        len: types::Filesize,
        advice: types::Advice,
    ) -> FsResult<()> {
        types::HostDescriptor::advise(&mut self.fs, fd, offset, len, advice).await
    }

    async fn sync_data(&mut self, fd: Fd) -> FsResult<()> {
        types::HostDescriptor::sync_data(&mut self.fs, fd).await
    }

    async fn get_flags(&mut self, fd: Fd) -> FsResult<types::DescriptorFlags> {
        types::HostDescriptor::get_flags(&mut self.fs, fd).await
    }

    async fn get_type(&mut self, fd: Fd) -> FsResult<types::DescriptorType> {
        types::HostDescriptor::get_type(&mut self.fs, fd).await
    }

    async fn set_size(&mut self, fd: Fd, size: types::Filesize) -> FsResult<()> {
        let charged = match (self.quota(&fd), self.writable_file(&fd)) {
            (Some(quota), Some(file)) => {
                let (key, now) = inode(&file).map_err(io_error)?;
                quota
                    .grow(key, now, size)
                    .map_err(|e| no_space(self.disk.notice.refused(e)))?;
                Some((quota, file, key))
            }
            _ => None,
        };
        let result = types::HostDescriptor::set_size(&mut self.fs, fd, size).await;
        if let Some((quota, file, key)) = charged
            && let Ok((_, now)) = inode(&file)
        {
            quota.resized(key, now);
        }
        result
    }

    async fn set_times(
        &mut self,
        fd: Fd,
        atim: types::NewTimestamp,
        mtim: types::NewTimestamp,
    ) -> FsResult<()> {
        types::HostDescriptor::set_times(&mut self.fs, fd, atim, mtim).await
    }

    async fn read(
        &mut self,
        fd: Fd,
        len: types::Filesize,
        offset: types::Filesize,
    ) -> FsResult<(Vec<u8>, bool)> {
        types::HostDescriptor::read(&mut self.fs, fd, len, offset).await
    }

    async fn write(
        &mut self,
        fd: Fd,
        buf: Vec<u8>,
        offset: types::Filesize,
    ) -> FsResult<types::Filesize> {
        let charged = match (self.quota(&fd), self.writable_file(&fd)) {
            (Some(quota), Some(file)) => {
                let (key, now) = inode(&file).map_err(io_error)?;
                let end = offset.saturating_add(buf.len() as u64);
                quota
                    .grow(key, now, end)
                    .map_err(|e| no_space(self.disk.notice.refused(e)))?;
                quota.writing(key);
                Some((quota, key))
            }
            _ => None,
        };
        let result = types::HostDescriptor::write(&mut self.fs, fd, buf, offset).await;
        if let Some((quota, key)) = charged {
            quota.written(key);
        }
        result
    }

    async fn read_directory(&mut self, fd: Fd) -> FsResult<Resource<types::DirectoryEntryStream>> {
        types::HostDescriptor::read_directory(&mut self.fs, fd).await
    }

    async fn sync(&mut self, fd: Fd) -> FsResult<()> {
        types::HostDescriptor::sync(&mut self.fs, fd).await
    }

    async fn create_directory_at(&mut self, fd: Fd, path: String) -> FsResult<()> {
        let Some(quota) = self.quota(&fd) else {
            return types::HostDescriptor::create_directory_at(&mut self.fs, fd, path).await;
        };
        let dir = self.dir(&fd);
        let reservation = quota
            .reserve_entry()
            .map_err(|e| no_space(self.disk.notice.refused(e)))?;
        types::HostDescriptor::create_directory_at(&mut self.fs, fd, path.clone()).await?;
        settle(reservation, dir, &path);
        Ok(())
    }

    async fn stat(&mut self, fd: Fd) -> FsResult<types::DescriptorStat> {
        types::HostDescriptor::stat(&mut self.fs, fd).await
    }

    async fn stat_at(
        &mut self,
        fd: Fd,
        path_flags: types::PathFlags,
        path: String,
    ) -> FsResult<types::DescriptorStat> {
        types::HostDescriptor::stat_at(&mut self.fs, fd, path_flags, path).await
    }

    async fn set_times_at(
        &mut self,
        fd: Fd,
        path_flags: types::PathFlags,
        path: String,
        atim: types::NewTimestamp,
        mtim: types::NewTimestamp,
    ) -> FsResult<()> {
        types::HostDescriptor::set_times_at(&mut self.fs, fd, path_flags, path, atim, mtim).await
    }

    async fn link_at(
        &mut self,
        fd: Fd,
        old_path_flags: types::PathFlags,
        old_path: String,
        new_descriptor: Fd,
        new_path: String,
    ) -> FsResult<()> {
        let Some(quota) = self.shared_quota(&fd, &new_descriptor)? else {
            return types::HostDescriptor::link_at(
                &mut self.fs,
                fd,
                old_path_flags,
                old_path,
                new_descriptor,
                new_path,
            )
            .await;
        };
        let dir = self.dir(&new_descriptor);
        let reservation = quota
            .reserve_entry()
            .map_err(|e| no_space(self.disk.notice.refused(e)))?;
        let name = new_path.clone();
        types::HostDescriptor::link_at(
            &mut self.fs,
            fd,
            old_path_flags,
            old_path,
            new_descriptor,
            new_path,
        )
        .await?;
        if let Some(entry) = dir.and_then(|dir| stat_at(&dir, &name)) {
            reservation.settle_link(entry.key, entry.size);
        }
        Ok(())
    }

    async fn open_at(
        &mut self,
        fd: Fd,
        path_flags: types::PathFlags,
        path: String,
        oflags: types::OpenFlags,
        flags: types::DescriptorFlags,
    ) -> FsResult<Fd> {
        let Some(quota) = self.quota(&fd) else {
            return types::HostDescriptor::open_at(
                &mut self.fs,
                fd,
                path_flags,
                path,
                oflags,
                flags,
            )
            .await;
        };
        // A new file takes a block; opening one that exists takes nothing.
        let creates = oflags.contains(types::OpenFlags::CREATE)
            && self
                .dir(&fd)
                .is_some_and(|dir| stat_at(&dir, &path).is_none());
        let reservation = if creates {
            Some(
                quota
                    .reserve_entry()
                    .map_err(|e| no_space(self.disk.notice.refused(e)))?,
            )
        } else {
            None
        };
        let opened =
            types::HostDescriptor::open_at(&mut self.fs, fd, path_flags, path, oflags, flags)
                .await?;
        self.disk.tracked.insert(opened.rep(), quota.clone());
        if let Some(file) = self.file(&opened)
            && let Ok((key, size)) = inode(&file)
        {
            // Settles a new file's block, or accounts for a truncation; any other
            // open only makes sure the file is charged (its size may not show
            // writes still on their way, so it is no reason to lower the charge).
            match reservation {
                Some(reservation) => reservation.settle(key, size),
                None if oflags.contains(types::OpenFlags::TRUNCATE) => quota.resized(key, size),
                None => quota.observe(key, size),
            }
        }
        Ok(opened)
    }

    fn drop(&mut self, fd: Fd) -> wasmtime::Result<()> {
        // A file unlinked while open was charged again by its later writes; when
        // its last name is gone, closing it gives that back.
        if let Some(quota) = self.disk.tracked.remove(&fd.rep())
            && let Some(file) = self.file(&fd)
            && let Ok(meta) = file.metadata()
            && meta.nlink() == 0
        {
            quota.removed((meta.dev(), meta.ino()), 1);
        }
        types::HostDescriptor::drop(&mut self.fs, fd)
    }

    async fn readlink_at(&mut self, fd: Fd, path: String) -> FsResult<String> {
        types::HostDescriptor::readlink_at(&mut self.fs, fd, path).await
    }

    async fn remove_directory_at(&mut self, fd: Fd, path: String) -> FsResult<()> {
        let removed = self.removal(&fd, &path);
        types::HostDescriptor::remove_directory_at(&mut self.fs, fd, path).await?;
        if let Some((quota, entry)) = removed {
            quota.removed(entry.key, entry.links);
        }
        Ok(())
    }

    async fn rename_at(
        &mut self,
        fd: Fd,
        old_path: String,
        new_fd: Fd,
        new_path: String,
    ) -> FsResult<()> {
        let quota = self.shared_quota(&fd, &new_fd)?;
        // A rename over an existing entry frees that entry (unless it is the same file).
        let replaced = quota.as_ref().and_then(|_| {
            let target = stat_at(&*self.dir(&new_fd)?, &new_path)?;
            let source = self.dir(&fd).and_then(|d| stat_at(&d, &old_path));
            (source.map(|s| s.key) != Some(target.key)).then_some(target)
        });
        types::HostDescriptor::rename_at(&mut self.fs, fd, old_path, new_fd, new_path).await?;
        if let (Some(quota), Some(entry)) = (quota, replaced) {
            quota.removed(entry.key, entry.links);
        }
        Ok(())
    }

    async fn symlink_at(&mut self, fd: Fd, src_path: String, dest_path: String) -> FsResult<()> {
        let Some(quota) = self.quota(&fd) else {
            return types::HostDescriptor::symlink_at(&mut self.fs, fd, src_path, dest_path).await;
        };
        let dir = self.dir(&fd);
        let reservation = quota
            .reserve_entry()
            .map_err(|e| no_space(self.disk.notice.refused(e)))?;
        types::HostDescriptor::symlink_at(&mut self.fs, fd, src_path, dest_path.clone()).await?;
        settle(reservation, dir, &dest_path);
        Ok(())
    }

    async fn unlink_file_at(&mut self, fd: Fd, path: String) -> FsResult<()> {
        let removed = self.removal(&fd, &path);
        types::HostDescriptor::unlink_file_at(&mut self.fs, fd, path).await?;
        if let Some((quota, entry)) = removed {
            quota.removed(entry.key, entry.links);
        }
        Ok(())
    }

    fn read_via_stream(
        &mut self,
        fd: Fd,
        offset: types::Filesize,
    ) -> FsResult<Resource<wasmtime_wasi::p2::DynInputStream>> {
        types::HostDescriptor::read_via_stream(&mut self.fs, fd, offset)
    }

    fn write_via_stream(
        &mut self,
        fd: Fd,
        offset: types::Filesize,
    ) -> FsResult<Resource<DynOutputStream>> {
        let charged = self.quota(&fd).zip(self.writable_file(&fd));
        let stream = types::HostDescriptor::write_via_stream(&mut self.fs, fd, offset)?;
        match charged {
            Some((quota, file)) => wrap_stream(
                self.fs.table,
                stream,
                (quota, self.disk.notice.clone()),
                file,
                StreamEnd::At(offset),
            ),
            None => Ok(stream),
        }
    }

    fn append_via_stream(&mut self, fd: Fd) -> FsResult<Resource<DynOutputStream>> {
        let charged = self.quota(&fd).zip(self.writable_file(&fd));
        let stream = types::HostDescriptor::append_via_stream(&mut self.fs, fd)?;
        match charged {
            Some((quota, file)) => wrap_stream(
                self.fs.table,
                stream,
                (quota, self.disk.notice.clone()),
                file,
                StreamEnd::Append(0),
            ),
            None => Ok(stream),
        }
    }

    async fn is_same_object(&mut self, a: Fd, b: Fd) -> wasmtime::Result<bool> {
        types::HostDescriptor::is_same_object(&mut self.fs, a, b).await
    }

    async fn metadata_hash(&mut self, fd: Fd) -> FsResult<types::MetadataHashValue> {
        types::HostDescriptor::metadata_hash(&mut self.fs, fd).await
    }

    async fn metadata_hash_at(
        &mut self,
        fd: Fd,
        path_flags: types::PathFlags,
        path: String,
    ) -> FsResult<types::MetadataHashValue> {
        types::HostDescriptor::metadata_hash_at(&mut self.fs, fd, path_flags, path).await
    }
}

impl QuotaFsView<'_> {
    /// The quota and the entry an unlink or rmdir at `path` would free.
    fn removal(&self, fd: &Fd, path: &str) -> Option<(DiskQuota, Existing)> {
        let quota = self.quota(fd)?;
        let entry = stat_at(&*self.dir(fd)?, path)?;
        Some((quota, entry))
    }
}

impl types::HostDirectoryEntryStream for QuotaFsView<'_> {
    async fn read_directory_entry(
        &mut self,
        stream: Resource<types::DirectoryEntryStream>,
    ) -> FsResult<Option<types::DirectoryEntry>> {
        types::HostDirectoryEntryStream::read_directory_entry(&mut self.fs, stream).await
    }

    fn drop(&mut self, stream: Resource<types::DirectoryEntryStream>) -> wasmtime::Result<()> {
        types::HostDirectoryEntryStream::drop(&mut self.fs, stream)
    }
}

/// Replaces wasmtime-wasi's file output stream with one that asks the quota first.
fn wrap_stream(
    table: &mut ResourceTable,
    stream: Resource<DynOutputStream>,
    (quota, notice): (DiskQuota, QuotaNotice),
    file: Arc<std::fs::File>,
    end: StreamEnd,
) -> FsResult<Resource<DynOutputStream>> {
    let inner = table.delete(stream)?;
    let wrapped: DynOutputStream = Box::new(QuotaStream {
        inner,
        quota,
        notice,
        file,
        key: None,
        end,
        in_flight: false,
    });
    Ok(table.push(wrapped)?)
}

/// Where the next write of a stream ends up.
#[derive(Clone, Copy)]
enum StreamEnd {
    /// At this offset, advancing with each write.
    At(u64),
    /// At the end of the file: the end the last accepted write reached (the file's
    /// size may not show it yet, the write runs in the background).
    Append(u64),
}

struct QuotaStream {
    inner: DynOutputStream,
    quota: DiskQuota,
    notice: QuotaNotice,
    file: Arc<std::fs::File>,
    /// The file's inode, once looked up.
    key: Option<InodeKey>,
    end: StreamEnd,
    /// A write was handed to the inner stream and may not be on disk yet.
    in_flight: bool,
}

impl QuotaStream {
    /// Charges a write of `len` bytes, or refuses it with ENOSPC.
    fn charge(&mut self, len: usize) -> StreamResult<()> {
        let len = len as u64;
        let failed = |e: std::io::Error| StreamError::LastOperationFailed(e.into());
        let (result, next) = match self.end {
            // The file's inode is known once the first write is charged: later
            // writes at a position need no syscall.
            StreamEnd::At(offset) => {
                let end = offset.saturating_add(len);
                let result = match self.key.and_then(|key| self.quota.grow_known(key, end)) {
                    Some(result) => result,
                    None => {
                        let (key, size) = inode(&self.file).map_err(failed)?;
                        self.key = Some(key);
                        self.quota.grow(key, size, end)
                    }
                };
                (result, StreamEnd::At(end))
            }
            // Appends land after whatever any writer put there: ask the file.
            StreamEnd::Append(last) => {
                let (key, size) = inode(&self.file).map_err(failed)?;
                self.key = Some(key);
                let end = size.max(last).saturating_add(len);
                (self.quota.grow(key, size, end), StreamEnd::Append(end))
            }
        };
        result.map_err(|error| {
            self.notice.refused(error);
            StreamError::LastOperationFailed(std::io::Error::from_raw_os_error(ENOSPC).into())
        })?;
        self.end = next;
        Ok(())
    }
}

/// ENOSPC ("no space left on device": 28 on Linux, macOS and the BSDs), which the
/// guest sees as `insufficient-space`.
const ENOSPC: i32 = 28;

#[wasmtime_wasi::async_trait]
impl Pollable for QuotaStream {
    async fn ready(&mut self) {
        self.inner.ready().await
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for QuotaStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.charge(bytes.len())?;
        self.inner.write(bytes)?;
        // The write runs in the background until the stream is ready again.
        self.begin_write();
        Ok(())
    }

    async fn blocking_write_and_flush(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.charge(bytes.len())?;
        self.begin_write();
        let result = self.inner.blocking_write_and_flush(bytes).await;
        self.end_write();
        result
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.inner.flush()
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        let permit = self.inner.check_write();
        // A permit (or an error) means the last write is no longer under way.
        if !matches!(permit, Ok(0)) {
            self.end_write();
        }
        permit
    }

    async fn cancel(&mut self) {
        self.inner.cancel().await;
        self.end_write();
    }
}

impl QuotaStream {
    fn begin_write(&mut self) {
        if let Some(key) = self.key
            && !self.in_flight
        {
            self.quota.writing(key);
            self.in_flight = true;
        }
    }

    fn end_write(&mut self) {
        if let Some(key) = self.key
            && self.in_flight
        {
            self.quota.written(key);
            self.in_flight = false;
        }
    }
}

impl Drop for QuotaStream {
    fn drop(&mut self) {
        self.end_write();
    }
}
