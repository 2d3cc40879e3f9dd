//! One file in: written aside, charged as it comes, renamed into place when complete.

use super::{
    FilesError, Transferred, WorkspacePath, aside_name, c_name, copy_charged, inode, links,
    open_dirs, path_error, stat_at, undo_created,
};
use crate::sandbox::DiskQuota;
use rustix::fd::AsFd;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use std::io::Read;
use std::path::Path;

pub(super) fn put_file(
    workspace: &Path,
    quota: &DiskQuota,
    path: &WorkspacePath,
    body: &mut dyn Read,
) -> Result<Transferred, FilesError> {
    let root = crate::confined::open_root(workspace)?;
    let (dirs, name) = path.split();
    let name = c_name(name)?;
    let mut created = Vec::new();
    let result = (|| {
        let parent = open_dirs(root.as_fd(), dirs, quota, &mut created, path)?;
        if let Some(existing) = stat_at(parent.as_fd(), &name)? {
            match FileType::from_raw_mode(existing.st_mode) {
                FileType::Directory => {
                    return Err(FilesError::Conflict(format!(
                        "`{}` is a directory",
                        path.display()
                    )));
                }
                FileType::Symlink => {
                    return Err(FilesError::InvalidPath(format!(
                        "`{}` is a symbolic link; links are never followed or replaced",
                        path.display()
                    )));
                }
                _ => {}
            }
        }
        let aside = aside_name();
        let reservation = quota.reserve_entry()?;
        let fd = rustix::fs::openat(
            &parent,
            aside.as_c_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )?;
        let key = inode(&rustix::fs::fstat(&fd)?);
        reservation.settle(key, 0);
        let mut file = std::fs::File::from(fd);
        let copied = copy_charged(body, &mut file, quota, key, FilesError::Body);
        let size = match copied {
            Ok(size) => size,
            Err(error) => {
                let _ = rustix::fs::unlinkat(&parent, aside.as_c_str(), AtFlags::empty());
                quota.removed(key, 1);
                return Err(error);
            }
        };
        // What the new file replaces gives its space back once it is gone.
        let replaced = stat_at(parent.as_fd(), &name)?;
        if let Err(e) = rustix::fs::renameat(&parent, aside.as_c_str(), &parent, name.as_c_str()) {
            let _ = rustix::fs::unlinkat(&parent, aside.as_c_str(), AtFlags::empty());
            quota.removed(key, 1);
            return Err(path_error(path, e));
        }
        if let Some(old) = &replaced {
            quota.removed(inode(old), links(old));
        }
        Ok(Transferred {
            path: Some(path.display()),
            size,
            entries: None,
            replaced: Some(replaced.is_some()),
        })
    })();
    if result.is_err() {
        undo_created(created, quota);
    }
    result
}
