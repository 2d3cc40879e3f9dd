//! Workspace files in and out without a tool: one file, or the whole workspace as a tar.
//!
//! Everything goes by file descriptor beneath the workspace root and never follows a link
//! (`crate::confined`), so a tool that swaps its directories for links cannot lead an upload
//! or a download outside. Uploads are charged to the session's disk quota, which its tasks
//! share, before each byte is written; one that would cross it is refused and leaves nothing
//! behind: a file is written aside and renamed into place, an archive is extracted into a
//! directory aside and merged into place only once all of it fitted.

mod archive_in;
mod archive_out;
mod path;
mod put;

pub use path::WorkspacePath;

use super::{Caller, LiveSession, Orchestrator, OrchestratorError};
use crate::sandbox::{DiskQuota, InodeKey, QuotaExceeded};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;
use serde::Serialize;
use std::ffi::{CString, OsStr};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

/// Why a transfer failed; the server maps each to a status and a stable code.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error(transparent)]
    Session(#[from] OrchestratorError),
    /// Outside the workspace, through a link, absolute, `..`, ...
    #[error("{0}")]
    InvalidPath(String),
    #[error("no such file: `{0}`")]
    NotFound(String),
    /// A directory where a file is asked for, or the other way round.
    #[error("{0}")]
    Conflict(String),
    #[error("the upload does not fit the session's disk quota: {0}")]
    Quota(#[from] QuotaExceeded),
    /// Not a tar, or an entry that may not be extracted (a device, a link leaving the workspace).
    #[error("{0}")]
    InvalidArchive(String),
    /// The request body could not be read (the client went away, most likely).
    #[error("cannot read the request body: {0}")]
    Body(std::io::Error),
    #[error("{0}")]
    Io(std::io::Error),
}

impl From<Errno> for FilesError {
    fn from(errno: Errno) -> Self {
        FilesError::Io(errno.into())
    }
}

impl From<std::io::Error> for FilesError {
    fn from(error: std::io::Error) -> Self {
        FilesError::Io(error)
    }
}

/// What a transfer moved: the answer to an upload, and the data of `file.uploaded` and
/// `file.downloaded`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Transferred {
    /// The file, for one file; none for an archive.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, nullable = false)]
    pub path: Option<String>,
    /// Bytes of file data.
    pub size: u64,
    /// Entries of an archive (files, directories, links).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, nullable = false)]
    pub entries: Option<u64>,
    /// Whether an uploaded file replaced one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, nullable = false)]
    pub replaced: Option<bool>,
}

/// One open session's workspace, for one transfer.
pub struct Workspace {
    session: String,
    live: Arc<LiveSession>,
    files: Arc<crate::sidecar::SessionWorkspace>,
}

impl Orchestrator {
    /// The caller's open session's workspace. A closed session's workspace was deleted with
    /// it (409); another principal's session is not found (404).
    pub fn workspace(&self, caller: &Caller, id: &str) -> Result<Workspace, FilesError> {
        if let Some(live) = self.live(caller, id) {
            let Some(files) = live.sidecar.workspace(id) else {
                return Err(FilesError::Conflict(format!(
                    "session {id} runs on sidecar `{}`: file transfers reach workspaces in the \
                     server's own process only",
                    live.sidecar.id()
                )));
            };
            return Ok(Workspace {
                session: id.to_owned(),
                live,
                files,
            });
        }
        let session = self.get_session(caller, id)?;
        Err(OrchestratorError::Conflict(format!(
            "session {} is {}: its workspace was deleted when it closed",
            session.id, session.state
        ))
        .into())
    }

    /// Records a transfer on the session's event stream (`file.uploaded`, `file.downloaded`);
    /// it counts as activity of the session.
    pub fn record_transfer(
        &self,
        workspace: &Workspace,
        event: crate::vocabulary::EventName,
        what: &Transferred,
    ) {
        workspace
            .live
            .record
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last_active_ms = super::now_ms();
        self.hub.publish(
            &workspace.session,
            event,
            serde_json::to_value(what).unwrap_or_default(),
        );
    }
}

impl Workspace {
    pub fn session(&self) -> &str {
        &self.session
    }

    /// The workspace's use of its disk quota now.
    pub fn disk(&self) -> super::DiskUsage {
        self.files.disk_usage()
    }

    /// Writes `body` to `path` (parent directories created), replacing a file there.
    pub fn put_file(
        &self,
        path: &WorkspacePath,
        body: &mut dyn Read,
    ) -> Result<Transferred, FilesError> {
        put::put_file(&self.files.root, &self.files.disk, path, body)
    }

    /// The file at `path`, open for reading, and its size.
    pub fn open_file(&self, path: &WorkspacePath) -> Result<(std::fs::File, u64), FilesError> {
        let root = crate::confined::open_root(&self.files.root)?;
        let fd = crate::confined::open_beneath(
            root.as_fd(),
            path.as_path(),
            OFlags::RDONLY,
            Mode::empty(),
        )
        .map_err(|e| path_error(path, e))?;
        let stat = rustix::fs::fstat(&fd)?;
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::RegularFile => Ok((std::fs::File::from(fd), stat.st_size as u64)),
            FileType::Directory => Err(FilesError::Conflict(format!(
                "`{}` is a directory; download the workspace as a tar instead",
                path.display()
            ))),
            _ => Err(FilesError::Conflict(format!(
                "`{}` is not a regular file",
                path.display()
            ))),
        }
    }

    /// Writes the whole workspace to `out` as a tar (files, directories and links as links).
    pub fn write_tar(&self, out: &mut dyn Write) -> Result<Transferred, FilesError> {
        archive_out::write_tar(&self.files.root, out)
    }

    /// Extracts the tar `input` into the workspace: all of it, or nothing.
    pub fn extract_tar(&self, input: &mut dyn Read) -> Result<Transferred, FilesError> {
        archive_in::extract_tar(&self.files.root, &self.files.disk, input)
    }
}

/// An error opening `path` beneath the root, said in terms of the path.
fn path_error(path: &WorkspacePath, errno: Errno) -> FilesError {
    match errno {
        Errno::NOENT => FilesError::NotFound(path.display()),
        Errno::LOOP | Errno::XDEV => FilesError::InvalidPath(format!(
            "`{}` goes through a symbolic link; links are never followed",
            path.display()
        )),
        Errno::NOTDIR => FilesError::Conflict(format!(
            "a name on the way to `{}` is not a directory",
            path.display()
        )),
        Errno::ISDIR => FilesError::Conflict(format!("`{}` is a directory", path.display())),
        other => FilesError::Io(other.into()),
    }
}

fn c_name(name: &OsStr) -> Result<CString, FilesError> {
    CString::new(name.as_bytes())
        .map_err(|_| FilesError::InvalidPath("a name contains a NUL byte".into()))
}

// Stat's field types differ between targets; all fit in u64.
#[allow(clippy::unnecessary_cast)]
fn inode(stat: &Stat) -> InodeKey {
    (stat.st_dev as u64, stat.st_ino as u64)
}

/// How many names the inode of `stat` has.
#[allow(clippy::unnecessary_cast)]
fn links(stat: &Stat) -> u64 {
    stat.st_nlink as u64
}

fn stat_at(dir: BorrowedFd<'_>, name: &CString) -> Result<Option<Stat>, Errno> {
    match rustix::fs::statat(dir, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => Ok(Some(stat)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

fn is_dir(stat: &Stat) -> bool {
    FileType::from_raw_mode(stat.st_mode) == FileType::Directory
}

/// The directories `dirs` beneath `root`, each opened without following a link and created
/// (charged one block) if missing. What was created is in `created`, for [`undo_created`].
fn open_dirs(
    root: BorrowedFd<'_>,
    dirs: Option<&Path>,
    quota: &DiskQuota,
    created: &mut Vec<Created>,
    shown: &WorkspacePath,
) -> Result<OwnedFd, FilesError> {
    let mut current = rustix::io::dup(root)?;
    let Some(dirs) = dirs else {
        return Ok(current);
    };
    for name in dirs.iter() {
        let name = c_name(name)?;
        let child = match crate::confined::open_dir_beneath(current.as_fd(), &name) {
            Ok(child) => child,
            Err(Errno::NOENT) => {
                let reservation = quota.reserve_entry()?;
                match rustix::fs::mkdirat(&current, name.as_c_str(), Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(path_error(shown, e)),
                }
                let child = crate::confined::open_dir_beneath(current.as_fd(), &name)
                    .map_err(|e| path_error(shown, e))?;
                let key = inode(&rustix::fs::fstat(&child)?);
                reservation.settle(key, 0);
                created.push(Created {
                    parent: rustix::io::dup(&current)?,
                    name: name.clone(),
                    key,
                });
                child
            }
            // A link where a directory is expected is refused as a link, not as a clash.
            Err(Errno::NOTDIR)
                if stat_at(current.as_fd(), &name)?
                    .is_some_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::Symlink) =>
            {
                return Err(path_error(shown, Errno::LOOP));
            }
            Err(e) => return Err(path_error(shown, e)),
        };
        current = child;
    }
    Ok(current)
}

/// A directory made for an upload, removed again if the upload fails.
struct Created {
    parent: OwnedFd,
    name: CString,
    key: InodeKey,
}

/// Removes the directories made for a failed upload (innermost first) and gives back their
/// blocks; one a task put something in meanwhile stays.
fn undo_created(created: Vec<Created>, quota: &DiskQuota) {
    for made in created.into_iter().rev() {
        if rustix::fs::unlinkat(&made.parent, made.name.as_c_str(), AtFlags::REMOVEDIR).is_ok() {
            quota.removed(made.key, 1);
        }
    }
}

/// Copies `body` into `file` (inode `key`, empty), asking `quota` before every chunk.
fn copy_charged(
    body: &mut dyn Read,
    file: &mut std::fs::File,
    quota: &DiskQuota,
    key: InodeKey,
    body_error: fn(std::io::Error) -> FilesError,
) -> Result<u64, FilesError> {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        let n = match body.read(&mut buffer) {
            Ok(0) => return Ok(written),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(body_error(e)),
        };
        let end = written + n as u64;
        quota.grow(key, written, end)?;
        file.write_all(&buffer[..n])?;
        written = end;
    }
}

/// A name for something written aside before it is moved into place.
fn aside_name() -> CString {
    CString::new(format!(
        ".toolgate-upload-{}",
        uuid::Uuid::new_v4().simple()
    ))
    .expect("no NUL in a uuid")
}
