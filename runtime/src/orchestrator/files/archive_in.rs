//! A tar into the workspace: extracted into a directory aside (charged to the quota as it
//! is written), then merged into place only when all of it was extracted and nothing in it
//! clashes with the workspace. What is left aside is removed and its blocks given back, so
//! a refused archive leaves the workspace as it was.
//!
//! Entries are files, directories, symbolic links that stay inside the workspace and hard
//! links to files of the same archive; absolute names, `..`, links leading out, devices and
//! fifos refuse the whole archive.

use super::{
    FilesError, Transferred, WorkspacePath, aside_name, c_name, copy_charged, inode, is_dir, links,
    open_dirs, stat_at,
};
use crate::confined::{open_beneath, open_dir_beneath};
use crate::sandbox::{DiskQuota, InodeKey};
use rustix::fd::{AsFd, BorrowedFd};
use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, RenameFlags};
use rustix::io::Errno;
use std::collections::HashMap;
use std::ffi::CString;
use std::io::Read;
use std::path::Path;

pub(super) fn extract_tar(
    workspace: &Path,
    quota: &DiskQuota,
    input: &mut dyn Read,
) -> Result<Transferred, FilesError> {
    let root = crate::confined::open_root(workspace)?;
    let aside = aside_name();
    let reservation = quota.reserve_entry()?;
    rustix::fs::mkdirat(&root, aside.as_c_str(), Mode::from_raw_mode(0o700))?;
    let staging = open_dir_beneath(root.as_fd(), &aside)?;
    reservation.settle(inode(&rustix::fs::fstat(&staging)?), 0);
    let result = extract(staging.as_fd(), quota, input).and_then(|summary| {
        // Everything fitted: first look for clashes, then move it into place.
        merge(staging.as_fd(), root.as_fd(), quota, "", true)?;
        merge(staging.as_fd(), root.as_fd(), quota, "", false)?;
        Ok(summary)
    });
    discard(workspace, &aside, quota);
    result
}

fn invalid(error: std::io::Error) -> FilesError {
    FilesError::InvalidArchive(format!("not a valid tar archive: {error}"))
}

/// Extracts every entry beneath `staging`.
fn extract(
    staging: BorrowedFd<'_>,
    quota: &DiskQuota,
    input: &mut dyn Read,
) -> Result<Transferred, FilesError> {
    let mut archive = tar::Archive::new(input);
    let (mut entries, mut size) = (0u64, 0u64);
    for entry in archive.entries().map_err(invalid)? {
        let mut entry = entry.map_err(invalid)?;
        let raw = entry.path().map_err(invalid)?.into_owned();
        let refuse =
            |why: String| FilesError::InvalidArchive(format!("entry `{}`: {why}", raw.display()));
        let path = match WorkspacePath::parse(&raw) {
            Ok(Some(path)) => path,
            // The archive's root (`./`).
            Ok(None) => continue,
            Err(e) => return Err(refuse(e.to_string())),
        };
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
            continue;
        }
        let (dirs, name) = path.split();
        let name = c_name(name)?;
        let parent = open_dirs(staging, dirs, quota, &mut Vec::new(), &path)?;
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                replace_existing(parent.as_fd(), &name, quota)
                    .map_err(|e| refuse(e.to_string()))?;
                let mode = (entry.header().mode().unwrap_or(0o644) & 0o755) | 0o600;
                let reservation = quota.reserve_entry()?;
                let fd = rustix::fs::openat(
                    &parent,
                    name.as_c_str(),
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(mode),
                )?;
                let key = inode(&rustix::fs::fstat(&fd)?);
                reservation.settle(key, 0);
                let mut file = std::fs::File::from(fd);
                size += copy_charged(&mut entry, &mut file, quota, key, invalid)?;
            }
            tar::EntryType::Directory => {
                open_dirs(staging, Some(path.as_path()), quota, &mut Vec::new(), &path)?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(invalid)?
                    .ok_or_else(|| refuse("a link without a target".into()))?
                    .into_owned();
                if !path.link_stays_inside(&target) {
                    return Err(refuse(format!(
                        "a link to `{}`, outside the workspace",
                        target.display()
                    )));
                }
                replace_existing(parent.as_fd(), &name, quota)
                    .map_err(|e| refuse(e.to_string()))?;
                let reservation = quota.reserve_entry()?;
                rustix::fs::symlinkat(target.as_path(), &parent, name.as_c_str())?;
                let stat = rustix::fs::statat(&parent, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW)?;
                reservation.settle(inode(&stat), 0);
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(invalid)?
                    .ok_or_else(|| refuse("a hard link without a target".into()))?
                    .into_owned();
                let target = match WorkspacePath::parse(&target) {
                    Ok(Some(target)) => target,
                    _ => {
                        return Err(refuse(format!(
                            "a hard link to `{}`, which is not a file of the archive",
                            target.display()
                        )));
                    }
                };
                let linked = existing_file(staging, &target).ok_or_else(|| {
                    refuse(format!(
                        "a hard link to `{}`, which is not a file of the archive",
                        target.display()
                    ))
                })?;
                replace_existing(parent.as_fd(), &name, quota)
                    .map_err(|e| refuse(e.to_string()))?;
                let reservation = quota.reserve_entry()?;
                let (target_parent, target_name, stat) = linked;
                rustix::fs::linkat(
                    &target_parent,
                    target_name.as_c_str(),
                    &parent,
                    name.as_c_str(),
                    AtFlags::empty(),
                )?;
                reservation.settle_link(inode(&stat), stat.st_size as u64);
            }
            other => {
                return Err(refuse(format!(
                    "a {other:?} entry; only files, directories and links are extracted"
                )));
            }
        }
        entries += 1;
    }
    Ok(Transferred {
        path: None,
        size,
        entries: Some(entries),
        replaced: None,
    })
}

/// A later entry of the same name replaces an earlier file or link; a directory is not
/// replaced by something else.
fn replace_existing(
    parent: BorrowedFd<'_>,
    name: &CString,
    quota: &DiskQuota,
) -> Result<(), FilesError> {
    match stat_at(parent, name)? {
        None => Ok(()),
        Some(stat) if is_dir(&stat) => Err(FilesError::InvalidArchive(
            "it is also a directory of the archive".into(),
        )),
        Some(stat) => {
            rustix::fs::unlinkat(parent, name.as_c_str(), AtFlags::empty())?;
            quota.removed(inode(&stat), links(&stat));
            Ok(())
        }
    }
}

/// The regular file at `path` beneath `staging`: its parent, its name and its stat.
fn existing_file(
    staging: BorrowedFd<'_>,
    path: &WorkspacePath,
) -> Option<(rustix::fd::OwnedFd, CString, rustix::fs::Stat)> {
    let (dirs, name) = path.split();
    let name = c_name(name).ok()?;
    let parent = match dirs {
        Some(dirs) => open_beneath(
            staging,
            dirs,
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .ok()?,
        None => rustix::io::dup(staging).ok()?,
    };
    let stat = stat_at(parent.as_fd(), &name).ok()??;
    (FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile).then_some((parent, name, stat))
}

/// Moves what `from` holds into `into`: new names are renamed over (never replacing what a
/// task made meanwhile), files and links replace files and links, directories present on
/// both sides are merged. With `dry_run` nothing moves: a clash is found before anything did.
fn merge(
    from: BorrowedFd<'_>,
    into: BorrowedFd<'_>,
    quota: &DiskQuota,
    prefix: &str,
    dry_run: bool,
) -> Result<(), FilesError> {
    let mut names = Vec::new();
    // A duplicate shares the directory's position: start from its first name.
    let mut listing = Dir::new(rustix::io::dup(from)?)?;
    listing.rewind();
    while let Some(item) = listing.read() {
        let name = item?.file_name().to_owned();
        if !matches!(name.to_bytes(), b"." | b"..") {
            names.push(name);
        }
    }
    for name in names {
        let shown = format!("{prefix}{}", name.to_string_lossy());
        let clash = || {
            FilesError::Conflict(format!(
                "`{shown}` is a directory on one side and not on the other (archive, workspace)"
            ))
        };
        let Some(source) = stat_at(from, &name)? else {
            continue;
        };
        match stat_at(into, &name)? {
            None if dry_run => {}
            None => {
                match rustix::fs::renameat_with(from, &name, into, &name, RenameFlags::NOREPLACE) {
                    Ok(()) => {}
                    Err(Errno::EXIST) => return Err(clash()),
                    Err(e) => return Err(e.into()),
                }
            }
            Some(target) if is_dir(&source) && is_dir(&target) => {
                let inner_from = open_dir_beneath(from, &name)?;
                let inner_into = open_dir_beneath(into, &name).map_err(|_| clash())?;
                merge(
                    inner_from.as_fd(),
                    inner_into.as_fd(),
                    quota,
                    &format!("{shown}/"),
                    dry_run,
                )?;
            }
            Some(target) if !is_dir(&source) && !is_dir(&target) => {
                if !dry_run {
                    rustix::fs::renameat(from, &name, into, &name)?;
                    quota.removed(inode(&target), links(&target));
                }
            }
            Some(_) => return Err(clash()),
        }
    }
    Ok(())
}

/// Removes the directory set aside and gives back the blocks of everything still in it.
fn discard(workspace: &Path, aside: &CString, quota: &DiskQuota) {
    let dir = workspace.join(std::ffi::OsStr::new(
        std::str::from_utf8(aside.to_bytes()).unwrap_or_default(),
    ));
    // Each name left aside, by inode: its names are given back one by one.
    let mut names: HashMap<InodeKey, u64> = HashMap::new();
    let _ = crate::confined::walk(&dir, usize::MAX, |entry, _| {
        *names.entry((entry.dev, entry.ino)).or_default() += 1;
    });
    if let Err(error) = crate::confined::remove_tree(&dir) {
        tracing::warn!(%error, "cannot remove an upload's leftovers");
        return;
    }
    for (key, count) in names {
        for links in (1..=count).rev() {
            quota.removed(key, links);
        }
    }
}
