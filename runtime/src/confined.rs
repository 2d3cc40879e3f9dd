//! Host-side work on a directory tree that a guest may change while the host works on it.
//!
//! A tool can rename, replace or symlink anything in its workspace at any moment, also while
//! the server lists, watches or deletes that workspace. So nothing here resolves a path string
//! below the root: the root is opened once, each directory is opened by one name relative to
//! its already-open parent without following a symbolic link (`openat2` with
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`, or `openat` with
//! `O_NOFOLLOW` where the kernel has no `openat2`), and each entry is examined and removed
//! relative to its open parent (`fstatat` / `unlinkat`, never following). A directory swapped
//! for a link between being listed and being opened is a link when it is opened: it is
//! reported or unlinked, never entered.
//!
//! At most [`MAX_DEPTH`] directories are open at once per operation, so a deep tree cannot
//! exhaust the process's file descriptors.

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;
use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// Directories below the root a walk enters, at most; deeper ones are reported but not
/// entered (the walk is then partial). Each level holds one open file descriptor.
pub const MAX_DEPTH: usize = 128;

/// Passes a deletion makes over a tree that keeps changing under it before giving up.
const MAX_DELETE_PASSES: usize = 64;

/// What an entry is, as `fstatat` without following saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    /// A symbolic link: reported, never followed.
    Symlink,
    /// Anything else (fifo, socket, device).
    Other,
}

/// One entry of a walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative to the root, `/`-separated; empty for the root itself. Names that are not
    /// UTF-8 are converted lossily.
    pub path: String,
    pub kind: EntryKind,
    /// `st_size`: bytes of a file, of a link's target string, or of a directory's listing.
    pub size: u64,
    pub modified: Option<SystemTime>,
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
}

/// How a walk ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalkOutcome {
    /// Entries visited below the root.
    pub entries: usize,
    /// Some of the tree was not visited: `max_entries` was reached, a directory was deeper
    /// than [`MAX_DEPTH`], or one could not be opened or read (often: swapped while walked).
    pub partial: bool,
}

/// Visits every entry beneath `root`: the root first (empty path), then each entry below it,
/// depth first, a directory before its contents. `visit` gets the open directory's fd with
/// each directory (the exact directory that is listed next), `None` with anything else.
/// Stops after `max_entries` entries below the root. Symbolic links are reported, never
/// followed, also when a directory is swapped for one while the walk runs.
///
/// Fails only when `root` itself cannot be opened as a directory (a link there fails too).
pub fn walk(
    root: &Path,
    max_entries: usize,
    mut visit: impl FnMut(&Entry, Option<BorrowedFd<'_>>),
) -> io::Result<WalkOutcome> {
    walk_while(root, max_entries, |entry, fd| {
        visit(entry, fd);
        true
    })
}

/// [`walk`], stopped (partial) as soon as `visit` returns false.
pub fn walk_while(
    root: &Path,
    max_entries: usize,
    mut visit: impl FnMut(&Entry, Option<BorrowedFd<'_>>) -> bool,
) -> io::Result<WalkOutcome> {
    let root = open_root(root)?;
    let stat = rustix::fs::fstat(&root)?;
    let mut outcome = WalkOutcome::default();
    if !visit(&entry(String::new(), &stat), Some(root.as_fd())) {
        outcome.partial = true;
        return Ok(outcome);
    }
    // One frame per open directory on the way down: its listing and its relative path.
    let mut stack: Vec<(Dir, String)> = vec![(Dir::new(root)?, String::new())];
    while let Some((dir, _)) = stack.last_mut() {
        let name = match dir.read() {
            Some(Ok(item)) => item.file_name().to_owned(),
            end => {
                // The end of the listing, or an error reading it.
                outcome.partial |= end.is_some();
                stack.pop();
                continue;
            }
        };
        if is_dot(&name) {
            continue;
        }
        if outcome.entries >= max_entries {
            outcome.partial = true;
            break;
        }
        outcome.entries += 1;
        let depth = stack.len();
        let (dir, prefix) = stack.last().expect("a frame is on the stack");
        let path = join(prefix, &name);
        let parent = dir_fd(dir);
        // Relative to the open parent, not following: a link is a link.
        let Ok(stat) = rustix::fs::statat(parent, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW)
        else {
            // Gone since it was listed.
            continue;
        };
        if kind(&stat) != EntryKind::Dir {
            if !visit(&entry(path, &stat), None) {
                outcome.partial = true;
                break;
            }
            continue;
        }
        if depth > MAX_DEPTH {
            outcome.partial = true;
            if !visit(&entry(path, &stat), None) {
                break;
            }
            continue;
        }
        let opened = open_dir_beneath(parent, &name)
            .and_then(|child| Ok((rustix::fs::fstat(&child)?, child)));
        match opened {
            Ok((stat, child)) => {
                // What was opened, which may differ from what was listed.
                if !visit(&entry(path.clone(), &stat), Some(child.as_fd())) {
                    outcome.partial = true;
                    break;
                }
                stack.push((Dir::new(child)?, path));
            }
            Err(_) => {
                // Swapped or removed since its stat: report what is there now, if anything.
                outcome.partial = true;
                if let Ok(now) =
                    rustix::fs::statat(parent, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW)
                    && kind(&now) != EntryKind::Dir
                    && !visit(&entry(path, &now), None)
                {
                    break;
                }
            }
        }
    }
    Ok(outcome)
}

/// Deletes the tree at `path` (a directory, or whatever is there), never following a link:
/// the last component of `path` is opened without following, relative to its parent, and
/// everything below it is unlinked relative to its own open parent. The parent of `path` is
/// the caller's to trust (a guest must not be able to change it). A tree that a guest keeps
/// changing meanwhile is retried a bounded number of times. Nothing there is success.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    let (parent, name) = match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => (parent, c_name(name)?),
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a tree to remove needs a parent and a name",
            ));
        }
    };
    let parent_dir = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let parent = rustix::fs::open(
        parent_dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    // Directories moved up from too deep, so far (their new names must not collide).
    let mut moved = 0u64;
    for _ in 0..MAX_DELETE_PASSES {
        match rustix::fs::unlinkat(&parent, name.as_c_str(), AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => return Ok(()),
            // A file or a link where the directory was: unlink it, not what it points to.
            Err(Errno::NOTDIR) => {
                return match rustix::fs::unlinkat(&parent, name.as_c_str(), AtFlags::empty()) {
                    Ok(()) | Err(Errno::NOENT) => Ok(()),
                    Err(e) => Err(e.into()),
                };
            }
            Err(Errno::NOTEMPTY | Errno::EXIST) => match open_dir_beneath(parent.as_fd(), &name) {
                Ok(dir) => empty_dir(dir, &mut moved)?,
                // Swapped or removed meanwhile: the next pass sees what it is now.
                Err(Errno::LOOP | Errno::NOTDIR | Errno::NOENT) => {}
                Err(e) => return Err(e.into()),
            },
            Err(e) => return Err(e.into()),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::DirectoryNotEmpty,
        "the tree kept changing while it was removed",
    ))
}

/// Unlinks everything below the open directory `root`, depth first, each entry relative to
/// its open parent. Entries that change meanwhile are left for the caller's next pass;
/// directories deeper than [`MAX_DEPTH`] are moved up to `root` for it.
fn empty_dir(root: OwnedFd, moved: &mut u64) -> io::Result<()> {
    // One frame per open directory: its listing and its name in the frame below.
    let mut stack: Vec<(Dir, Option<CString>)> = vec![(Dir::new(root)?, None)];
    while let Some((dir, _)) = stack.last_mut() {
        let name = match dir.read() {
            Some(Ok(item)) => item.file_name().to_owned(),
            // Listed (or unreadable): remove the directory itself from its parent.
            None | Some(Err(_)) => {
                let (_, name) = stack.pop().expect("a frame is on the stack");
                if let (Some(name), Some((parent, _))) = (name, stack.last()) {
                    // Not empty when the guest added something: the next pass sees it.
                    let _ =
                        rustix::fs::unlinkat(dir_fd(parent), name.as_c_str(), AtFlags::REMOVEDIR);
                }
                continue;
            }
        };
        if is_dot(&name) {
            continue;
        }
        let parent = dir_fd(&stack.last().expect("a frame is on the stack").0);
        // Unlinking a non-directory never follows it: a link goes, its target stays.
        match rustix::fs::unlinkat(parent, name.as_c_str(), AtFlags::empty()) {
            Err(Errno::ISDIR | Errno::PERM) => {}
            // Gone, unlinked, or not ours to remove: the caller's next pass tells.
            _ => continue,
        }
        if stack.len() > MAX_DEPTH {
            // Too deep to hold one more descriptor: move it up to the top, where a later
            // pass removes it (renaming never follows a link either).
            *moved += 1;
            let top = format!(".deep-{moved}");
            let _ =
                rustix::fs::renameat(parent, name.as_c_str(), dir_fd(&stack[0].0), top.as_str());
            continue;
        }
        match open_dir_beneath(parent, &name) {
            Ok(child) => stack.push((Dir::new(child)?, Some(name))),
            // Became a link or a file since: unlink that instead.
            Err(Errno::LOOP | Errno::NOTDIR) => {
                let _ = rustix::fs::unlinkat(parent, name.as_c_str(), AtFlags::empty());
            }
            Err(_) => {}
        }
    }
    Ok(())
}

/// Opens the root of a tree: a directory, not a link to one.
pub fn open_root(root: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Opens the directory `name` (one component, as listed) of the open directory `parent`,
/// failing on a link (`ELOOP`) or a non-directory (`ENOTDIR`) rather than following it.
pub fn open_dir_beneath(parent: BorrowedFd<'_>, name: &CStr) -> Result<OwnedFd, Errno> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY;
    if let Some(opened) = openat2_beneath(parent, name, flags, Mode::empty()) {
        return opened;
    }
    // One listed name (never `..`, never containing `/`) with O_NOFOLLOW: no link is followed.
    rustix::fs::openat(parent, name, flags | NO_FOLLOW, Mode::empty())
}

/// Opens `path` (relative, plain names only: the caller has refused `..`, `.` and absolute
/// paths) beneath the open directory `root`, following no link on the way or at its end:
/// a link anywhere on it fails with `ELOOP`.
pub fn open_beneath(
    root: BorrowedFd<'_>,
    path: &Path,
    flags: OFlags,
    mode: Mode,
) -> Result<OwnedFd, Errno> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::INVAL)?;
    if let Some(opened) = openat2_beneath(root, &c_path, flags, mode) {
        return opened;
    }
    // Without openat2: one name at a time, each directory opened without following.
    let names: Vec<&OsStr> = path.iter().collect();
    let Some((last, dirs)) = names.split_last() else {
        return Err(Errno::INVAL);
    };
    let mut current: Option<OwnedFd> = None;
    for name in dirs {
        let name = c_name(name).map_err(|_| Errno::INVAL)?;
        let parent = current.as_ref().map_or(root, |fd| fd.as_fd());
        current = Some(open_dir_beneath(parent, &name)?);
    }
    let parent = current.as_ref().map_or(root, |fd| fd.as_fd());
    let last = c_name(last).map_err(|_| Errno::INVAL)?;
    rustix::fs::openat(parent, last.as_c_str(), flags | NO_FOLLOW, mode)
}

const NO_FOLLOW: OFlags = OFlags::NOFOLLOW
    .union(OFlags::CLOEXEC)
    .union(OFlags::NOCTTY);

/// `openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`; `None` when
/// the kernel has none (before Linux 5.6), so the caller goes one name at a time.
fn openat2_beneath(
    parent: BorrowedFd<'_>,
    path: &CStr,
    flags: OFlags,
    mode: Mode,
) -> Option<Result<OwnedFd, Errno>> {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::ResolveFlags;
        use std::sync::atomic::{AtomicBool, Ordering};
        // Set once the kernel said it has no openat2.
        static NO_OPENAT2: AtomicBool = AtomicBool::new(false);
        if !NO_OPENAT2.load(Ordering::Relaxed) {
            let flags = flags | NO_FOLLOW;
            let resolve =
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
            match rustix::fs::openat2(parent, path, flags, mode, resolve) {
                Err(Errno::NOSYS) => NO_OPENAT2.store(true, Ordering::Relaxed),
                // Interrupted by a concurrent rename (resolution raced): try again.
                Err(Errno::AGAIN) => {
                    return Some(rustix::fs::openat2(parent, path, flags, mode, resolve));
                }
                result => return Some(result),
            }
        }
    }
    let _ = (parent, path, flags, mode);
    None
}

fn dir_fd(dir: &Dir) -> BorrowedFd<'_> {
    dir.fd().expect("a directory stream has a descriptor")
}

fn is_dot(name: &CStr) -> bool {
    matches!(name.to_bytes(), b"." | b"..")
}

fn join(prefix: &str, name: &CStr) -> String {
    let name = String::from_utf8_lossy(name.to_bytes());
    if prefix.is_empty() {
        name.into_owned()
    } else {
        format!("{prefix}/{name}")
    }
}

fn c_name(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn kind(stat: &Stat) -> EntryKind {
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile => EntryKind::File,
        FileType::Directory => EntryKind::Dir,
        FileType::Symlink => EntryKind::Symlink,
        _ => EntryKind::Other,
    }
}

// Stat's field types differ between targets; all fit in the widths used here.
#[allow(clippy::unnecessary_cast)]
fn entry(path: String, stat: &Stat) -> Entry {
    let (seconds, nanos) = (stat.st_mtime as i64, stat.st_mtime_nsec as u32);
    let modified = if seconds >= 0 {
        SystemTime::UNIX_EPOCH.checked_add(Duration::new(seconds as u64, nanos))
    } else {
        SystemTime::UNIX_EPOCH
            .checked_sub(Duration::from_secs(seconds.unsigned_abs()))
            .and_then(|t| t.checked_add(Duration::from_nanos(u64::from(nanos))))
    };
    Entry {
        path,
        kind: kind(stat),
        size: stat.st_size.max(0) as u64,
        modified,
        dev: stat.st_dev as u64,
        ino: stat.st_ino as u64,
        nlink: stat.st_nlink as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A workspace and, beside it, a canary directory that nothing may open, list or change.
    struct Fixture {
        _dir: tempfile::TempDir,
        workspace: PathBuf,
        canary: PathBuf,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let workspace = dir.path().join("ws");
        let canary = dir.path().join("canary");
        fs::create_dir_all(workspace.join("d/sub")).unwrap();
        fs::write(workspace.join("d/sub/inside.txt"), "i").unwrap();
        fs::create_dir_all(canary.join("inner")).unwrap();
        fs::write(canary.join("secret.txt"), "s").unwrap();
        Fixture {
            _dir: dir,
            workspace,
            canary,
        }
    }

    /// An inotify instance seeing any access to the canary directory and its file.
    fn watch_canary(canary: &Path) -> OwnedFd {
        use rustix::fs::inotify::{CreateFlags, WatchFlags, add_watch, init};
        let fd = init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC).unwrap();
        add_watch(&fd, canary, WatchFlags::ALL_EVENTS).unwrap();
        add_watch(&fd, canary.join("secret.txt"), WatchFlags::ALL_EVENTS).unwrap();
        fd
    }

    /// How many events the canary's watcher saw.
    fn canary_events(fd: &OwnedFd) -> usize {
        use rustix::fs::inotify::Reader;
        use std::mem::MaybeUninit;
        let mut buffer = [MaybeUninit::<u8>::uninit(); 4096];
        let mut reader = Reader::new(fd, &mut buffer);
        let mut count = 0;
        while reader.next().is_ok() {
            count += 1;
        }
        count
    }

    fn all(root: &Path) -> (Vec<(String, EntryKind)>, WalkOutcome) {
        let mut seen = Vec::new();
        let outcome = walk(root, usize::MAX, |e, _| seen.push((e.path.clone(), e.kind))).unwrap();
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        (seen, outcome)
    }

    #[test]
    fn a_walk_reports_every_entry_and_links_without_following_them() {
        let f = fixture();
        symlink("../canary", f.workspace.join("link")).unwrap();
        let canary = watch_canary(&f.canary);
        let (seen, outcome) = all(&f.workspace);
        assert_eq!(
            seen,
            [
                (String::new(), EntryKind::Dir),
                ("d".into(), EntryKind::Dir),
                ("d/sub".into(), EntryKind::Dir),
                ("d/sub/inside.txt".into(), EntryKind::File),
                ("link".into(), EntryKind::Symlink),
            ]
        );
        assert_eq!(
            outcome,
            WalkOutcome {
                entries: 4,
                partial: false
            }
        );
        assert_eq!(canary_events(&canary), 0);
    }

    #[test]
    fn a_walk_stops_at_its_bounds() {
        let f = fixture();
        let outcome = walk(&f.workspace, 2, |_, _| {}).unwrap();
        assert_eq!(
            outcome,
            WalkOutcome {
                entries: 2,
                partial: true
            }
        );

        let deep = (0..=MAX_DEPTH + 1).fold(f.workspace.clone(), |p, _| p.join("x"));
        fs::create_dir_all(&deep).unwrap();
        let mut deepest = 0;
        let outcome = walk(&f.workspace, usize::MAX, |e, _| {
            deepest = deepest.max(e.path.split('/').count());
        })
        .unwrap();
        assert!(outcome.partial);
        assert_eq!(
            deepest,
            MAX_DEPTH + 1,
            "the deepest entered level's entries are seen"
        );
    }

    #[test]
    fn a_walk_whose_directory_is_swapped_for_a_link_stays_inside() {
        let f = fixture();
        let canary = watch_canary(&f.canary);
        let mut seen = Vec::new();
        // Swapped right after `d` is opened and before it is listed: the walk lists what it
        // opened (now `d.aside`), not what the name `d` points to now.
        walk(&f.workspace, usize::MAX, |e, _| {
            if e.path == "d" {
                fs::rename(f.workspace.join("d"), f.workspace.join("d.aside")).unwrap();
                symlink("../canary", f.workspace.join("d")).unwrap();
            }
            seen.push(e.path.clone());
        })
        .unwrap();
        assert!(seen.contains(&"d/sub/inside.txt".to_owned()), "{seen:?}");
        assert!(
            !seen
                .iter()
                .any(|p| p.contains("secret") || p.contains("inner")),
            "{seen:?}"
        );
        assert_eq!(canary_events(&canary), 0);

        // A name that is a link by the time it is opened is not entered.
        let root = open_root(&f.workspace).unwrap();
        let refused = open_dir_beneath(root.as_fd(), c"d").unwrap_err();
        assert!(
            matches!(refused, Errno::LOOP | Errno::NOTDIR),
            "{refused:?}"
        );
        assert_eq!(canary_events(&canary), 0);
    }

    /// Swaps `ws/d` for a link to the canary and back until told to stop.
    fn swapper(workspace: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
        std::thread::spawn(move || {
            let (d, aside) = (workspace.join("d"), workspace.join("d.aside"));
            let mut swaps = 0;
            while !stop.load(Ordering::Relaxed) {
                // Errors are expected once the tree is being deleted.
                let _ = fs::rename(&d, &aside);
                let _ = symlink("../canary", &d);
                let _ = fs::remove_file(&d);
                let _ = fs::rename(&aside, &d);
                swaps += 1;
            }
            swaps
        })
    }

    #[test]
    fn racing_swaps_never_lead_a_walk_or_a_deletion_outside() {
        let f = fixture();
        for n in 0..50 {
            fs::write(f.workspace.join(format!("filler-{n}")), "f").unwrap();
        }
        let canary = watch_canary(&f.canary);
        let stop = Arc::new(AtomicBool::new(false));
        let racing = swapper(f.workspace.clone(), stop.clone());
        for _ in 0..300 {
            walk(&f.workspace, usize::MAX, |e, _| {
                assert!(
                    !e.path.contains("secret") && !e.path.contains("inner"),
                    "{}",
                    e.path
                );
            })
            .unwrap();
        }
        remove_tree(&f.workspace).unwrap();
        stop.store(true, Ordering::Relaxed);
        assert!(racing.join().unwrap() > 0);
        assert!(!f.workspace.exists());
        assert_eq!(
            canary_events(&canary),
            0,
            "nothing outside was opened, listed or changed"
        );
        assert_eq!(
            fs::read_to_string(f.canary.join("secret.txt")).unwrap(),
            "s"
        );
        assert!(f.canary.join("inner").is_dir());
    }

    #[test]
    fn removing_a_tree_unlinks_links_and_not_their_targets() {
        let f = fixture();
        symlink("../canary", f.workspace.join("link")).unwrap();
        symlink(
            "../../../canary/secret.txt",
            f.workspace.join("d/sub/file-link"),
        )
        .unwrap();
        remove_tree(&f.workspace).unwrap();
        assert!(!f.workspace.exists());
        assert_eq!(
            fs::read_to_string(f.canary.join("secret.txt")).unwrap(),
            "s"
        );

        // A link in the tree's own place is unlinked, its target kept; nothing there is fine.
        symlink("canary", &f.workspace).unwrap();
        remove_tree(&f.workspace).unwrap();
        assert!(fs::symlink_metadata(&f.workspace).is_err());
        assert!(f.canary.join("inner").is_dir());
        remove_tree(&f.workspace).unwrap();
    }

    #[test]
    fn removing_a_tree_deeper_than_the_open_directories_allowed() {
        let f = fixture();
        let deep = (0..MAX_DEPTH * 2 + 3).fold(f.workspace.clone(), |p, _| p.join("x"));
        fs::create_dir_all(&deep).unwrap();
        fs::write(deep.join("bottom.txt"), "b").unwrap();
        remove_tree(&f.workspace).unwrap();
        assert!(!f.workspace.exists());
    }
}
