//! The workspace out as a tar, streamed: each file is opened beneath the root without
//! following a link and copied as it is read; nothing is held whole in memory.

use super::{FilesError, Transferred};
use crate::confined::{EntryKind, open_beneath};
use rustix::fd::AsFd;
use rustix::fs::{Mode, OFlags};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Entries an archive holds, at most (the quota bounds a workspace far below this).
const MAX_ENTRIES: usize = 1_000_000;

pub(super) fn write_tar(workspace: &Path, out: &mut dyn Write) -> Result<Transferred, FilesError> {
    let root = crate::confined::open_root(workspace)?;
    let mut builder = tar::Builder::new(out);
    let (mut entries, mut size) = (0u64, 0u64);
    let mut failed: Option<std::io::Error> = None;
    crate::confined::walk_while(workspace, MAX_ENTRIES, |entry, _| {
        if entry.path.is_empty() {
            return true;
        }
        let path = PathBuf::from(&entry.path);
        let mut header = tar::Header::new_gnu();
        header.set_mtime(
            entry
                .modified
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs()),
        );
        let appended = match entry.kind {
            EntryKind::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                builder.append_data(&mut header, &path, std::io::empty())
            }
            EntryKind::File => {
                let Ok(fd) = open_beneath(root.as_fd(), &path, OFlags::RDONLY, Mode::empty())
                else {
                    // Gone or swapped for a link since it was listed.
                    return true;
                };
                let Ok(stat) = rustix::fs::fstat(&fd) else {
                    return true;
                };
                let length = stat.st_size as u64;
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(stat.st_mode & 0o755);
                header.set_size(length);
                // Exactly `length` bytes, whatever a tool does to the file meanwhile.
                let data = std::fs::File::from(fd)
                    .take(length)
                    .chain(std::io::repeat(0))
                    .take(length);
                size += length;
                builder.append_data(&mut header, &path, data)
            }
            EntryKind::Symlink => {
                let Some(target) = link_target(root.as_fd(), &path) else {
                    return true;
                };
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                builder.append_link(&mut header, &path, target)
            }
            // Fifos, sockets, devices: nothing a workspace should carry.
            EntryKind::Other => return true,
        };
        match appended {
            Ok(()) => {
                entries += 1;
                true
            }
            Err(error) => {
                failed = Some(error);
                false
            }
        }
    })?;
    if let Some(error) = failed {
        return Err(FilesError::Io(error));
    }
    builder.finish()?;
    Ok(Transferred {
        path: None,
        size,
        entries: Some(entries),
        replaced: None,
    })
}

/// What the link at `path` says, read relative to its parent opened beneath the root.
fn link_target(root: rustix::fd::BorrowedFd<'_>, path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?;
    let parent = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dirs) => open_beneath(
            root,
            dirs,
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .ok()?,
        None => rustix::io::dup(root).ok()?,
    };
    let target = rustix::fs::readlinkat(&parent, name, Vec::new()).ok()?;
    Some(PathBuf::from(
        <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(target.into_bytes()),
    ))
}
