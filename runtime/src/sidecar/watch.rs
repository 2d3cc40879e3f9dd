//! Knowing cheaply whether a workspace changed.
//!
//! Every task is followed by a `file.changed` event, so a task needs the workspace as it was
//! before and after. Walking the tree twice per task costs a few microseconds for an empty
//! workspace and milliseconds for a checked-out repository. Instead, one inotify instance
//! watches every directory of every workspace, and each workspace keeps its last
//! [`Snapshot`] with the change count it was taken at. The kernel queues an inotify event
//! before the changing call returns, so reading the queue (one non-blocking read) tells
//! whether anything changed since the snapshot; only then is the tree walked again.
//!
//! A directory that cannot be watched (no inotify, the watch limit reached) makes its
//! workspace walk on every snapshot, as it would without this module.
//!
//! Watches are placed on the directories the confined walk opened, by their file descriptor,
//! never by a path a tool could have changed meanwhile (see [`Watches::watch`]).

use std::collections::{HashMap, HashSet};
use std::os::fd::BorrowedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::workspace::Snapshot;

/// Directories watched per workspace, at most: watches are kernel memory shared by every
/// workspace of the user. A workspace with more directories is walked on every snapshot.
const MAX_WATCHES_PER_WORKSPACE: usize = 4096;

/// One inotify instance for all workspaces (instances are few per user, watches many).
pub struct ChangeWatcher {
    inner: Mutex<Watches>,
}

struct Watches {
    #[cfg(target_os = "linux")]
    inotify: Option<rustix::fd::OwnedFd>,
    /// Watch descriptor → the workspace it belongs to.
    owners: HashMap<i32, Weak<Tracked>>,
}

/// A workspace's change count, shared with the watcher.
#[derive(Default)]
struct Tracked {
    changes: AtomicU64,
    /// Whether the last walk watched every directory; if not, the next snapshot walks too.
    watched: AtomicBool,
}

/// One workspace: its root, its change count and its last snapshot.
pub struct WorkspaceTracker {
    root: PathBuf,
    watcher: Arc<ChangeWatcher>,
    tracked: Arc<Tracked>,
    /// The last snapshot and the change count it was taken at.
    last: Mutex<Option<(u64, Arc<Snapshot>)>>,
    /// This workspace's watch descriptors, removed when it is dropped.
    descriptors: Mutex<HashSet<i32>>,
}

impl ChangeWatcher {
    /// A watcher; without inotify every snapshot walks the tree.
    pub fn new() -> Arc<Self> {
        #[cfg(target_os = "linux")]
        let inotify = {
            use rustix::fs::inotify::{CreateFlags, init};
            match init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC) {
                Ok(fd) => Some(fd),
                Err(error) => {
                    tracing::warn!(%error, "no inotify: workspaces are walked before and after every task");
                    None
                }
            }
        };
        Arc::new(Self {
            inner: Mutex::new(Watches {
                #[cfg(target_os = "linux")]
                inotify,
                owners: HashMap::new(),
            }),
        })
    }

    /// Starts tracking the workspace at `root`.
    pub fn track(self: &Arc<Self>, root: PathBuf) -> WorkspaceTracker {
        WorkspaceTracker {
            root,
            watcher: self.clone(),
            tracked: Arc::new(Tracked {
                changes: AtomicU64::new(0),
                // Set by each walk: whether it could watch every directory.
                watched: AtomicBool::new(false),
            }),
            last: Mutex::new(None),
            descriptors: Mutex::default(),
        }
    }

    /// How many directories are watched, over all workspaces.
    pub fn watched_directories(&self) -> usize {
        self.lock().owners.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Watches> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Watches {
    /// Watches the open directory `dir` for `owner`; `None` when it cannot be watched.
    ///
    /// inotify has no `*at` form, so the watch is added through `/proc/self/fd/<fd>`. That is
    /// a "magic link": the kernel resolves it to the open file itself (the path the fd holds,
    /// not its name looked up again), so the watch lands on exactly the directory the walk
    /// opened beneath the workspace root, whatever a tool renamed or swapped since. It must be
    /// followed, so no `DONT_FOLLOW` (that would stop at the link and `ONLYDIR` refuse it).
    /// Without procfs nothing is watched, and the workspace is walked on every snapshot.
    #[cfg(target_os = "linux")]
    fn watch(&mut self, dir: BorrowedFd<'_>, owner: &Arc<Tracked>) -> Option<i32> {
        use rustix::fd::AsRawFd;
        use rustix::fs::inotify::{WatchFlags, add_watch};
        let inotify = self.inotify.as_ref()?;
        let flags = WatchFlags::CREATE
            | WatchFlags::DELETE
            | WatchFlags::MODIFY
            | WatchFlags::ATTRIB
            | WatchFlags::MOVED_FROM
            | WatchFlags::MOVED_TO
            | WatchFlags::DELETE_SELF
            | WatchFlags::MOVE_SELF
            | WatchFlags::ONLYDIR
            | WatchFlags::EXCL_UNLINK;
        match add_watch(inotify, format!("/proc/self/fd/{}", dir.as_raw_fd()), flags) {
            Ok(wd) => {
                self.owners.insert(wd, Arc::downgrade(owner));
                Some(wd)
            }
            Err(error) => {
                tracing::debug!(%error, "cannot watch a workspace directory");
                None
            }
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn watch(&mut self, _dir: BorrowedFd<'_>, _owner: &Arc<Tracked>) -> Option<i32> {
        None
    }

    /// Reads every queued inotify event and counts it against its workspace.
    #[cfg(target_os = "linux")]
    fn drain(&mut self) {
        use rustix::fs::inotify::{ReadFlags, Reader};
        use std::mem::MaybeUninit;
        let Some(inotify) = self.inotify.as_ref() else {
            return;
        };
        let mut buffer = [MaybeUninit::<u8>::uninit(); 4096];
        let mut reader = Reader::new(inotify, &mut buffer);
        let mut gone = Vec::new();
        let mut overflowed = false;
        // Ends with EAGAIN once the queue is empty.
        while let Ok(event) = reader.next() {
            let flags = event.events();
            if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
                overflowed = true;
                continue;
            }
            if let Some(owner) = self.owners.get(&event.wd()).and_then(Weak::upgrade) {
                owner.changes.fetch_add(1, Ordering::AcqRel);
            }
            if flags.contains(ReadFlags::IGNORED) {
                gone.push(event.wd());
            }
        }
        for wd in gone {
            self.owners.remove(&wd);
        }
        if overflowed {
            // Events were lost: every workspace may have changed.
            for owner in self.owners.values().filter_map(Weak::upgrade) {
                owner.changes.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn drain(&mut self) {}

    /// Whether watch `wd` is `owner`'s.
    fn owns(&self, wd: i32, owner: &Arc<Tracked>) -> bool {
        self.owners
            .get(&wd)
            .is_some_and(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(owner)))
    }

    fn unwatch(&mut self, descriptors: &HashSet<i32>, owner: &Arc<Tracked>) {
        for wd in descriptors {
            if self.owns(*wd, owner) {
                self.owners.remove(wd);
                #[cfg(target_os = "linux")]
                if let Some(inotify) = self.inotify.as_ref() {
                    // The directory may be gone already, and its watch with it.
                    let _ = rustix::fs::inotify::remove_watch(inotify, *wd);
                }
            }
        }
    }
}

impl WorkspaceTracker {
    /// The last snapshot, if nothing changed since: no walk, no waiting (`None` when a walk
    /// is needed or under way). Cheap enough for an async worker.
    pub fn unchanged(&self) -> Option<Arc<Snapshot>> {
        self.watcher.lock().drain();
        let changes = self.tracked.changes.load(Ordering::Acquire);
        let last = self.last.try_lock().ok()?;
        match last.as_ref() {
            Some((at, snapshot))
                if *at == changes && self.tracked.watched.load(Ordering::Acquire) =>
            {
                Some(snapshot.clone())
            }
            _ => None,
        }
    }

    /// The workspace as it is now: the last snapshot if nothing changed since, else a new one
    /// (a walk: blocking).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.watcher.lock().drain();
        let changes = self.tracked.changes.load(Ordering::Acquire);
        // One snapshot of a workspace at a time; other workspaces are not held up by a walk.
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if self.tracked.watched.load(Ordering::Acquire)
            && let Some((at, snapshot)) = last.as_ref()
            && *at == changes
        {
            return snapshot.clone();
        }
        let mut descriptors = self.descriptors.lock().unwrap_or_else(|e| e.into_inner());
        // Forget the watches of directories that are gone (their removal was just drained).
        {
            let watches = self.watcher.lock();
            descriptors.retain(|wd| watches.owns(*wd, &self.tracked));
        }
        // Each directory is watched before it is read: a change after the read is an event.
        // The next snapshot may be skipped only if every directory is watched.
        let mut all_watched = true;
        let snapshot = Arc::new(Snapshot::take_visiting(&self.root, |dir| {
            if descriptors.len() >= MAX_WATCHES_PER_WORKSPACE {
                all_watched = false;
                return;
            }
            match self.watcher.lock().watch(dir, &self.tracked) {
                Some(wd) => {
                    descriptors.insert(wd);
                }
                None => all_watched = false,
            }
        }));
        self.tracked
            .watched
            .store(all_watched && !snapshot.is_partial(), Ordering::Release);
        *last = Some((changes, snapshot.clone()));
        snapshot
    }
}

impl Drop for WorkspaceTracker {
    fn drop(&mut self) {
        let descriptors =
            std::mem::take(&mut *self.descriptors.lock().unwrap_or_else(|e| e.into_inner()));
        self.watcher.lock().unwatch(&descriptors, &self.tracked);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn changes(before: &Snapshot, after: &Snapshot) -> (Vec<String>, Vec<String>, Vec<String>) {
        let c = before.changes(after);
        (c.created, c.modified, c.deleted)
    }

    #[test]
    fn an_unchanged_workspace_is_not_walked_again() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a.txt"), "a").unwrap();
        let watcher = ChangeWatcher::new();
        let tracker = watcher.track(dir.path().to_owned());
        assert!(tracker.unchanged().is_none(), "never walked yet");
        let first = tracker.snapshot();
        let second = tracker.snapshot();
        assert!(
            Arc::ptr_eq(&first, &second),
            "nothing changed, so no new walk"
        );
        assert!(Arc::ptr_eq(&first, &tracker.unchanged().unwrap()));
        assert_eq!(watcher.watched_directories(), 1);
        fs::write(dir.path().join("b.txt"), "b").unwrap();
        assert!(tracker.unchanged().is_none(), "changed: a walk is needed");
    }

    #[test]
    fn every_kind_of_change_is_seen_also_in_new_directories() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("keep.txt"), "k").unwrap();
        fs::write(root.join("gone.txt"), "g").unwrap();
        fs::create_dir(root.join("old")).unwrap();
        fs::write(root.join("old/edit.txt"), "e").unwrap();
        let watcher = ChangeWatcher::new();
        let tracker = watcher.track(root.to_owned());

        let before = tracker.snapshot();
        fs::write(root.join("old/edit.txt"), "edited").unwrap();
        fs::remove_file(root.join("gone.txt")).unwrap();
        fs::create_dir_all(root.join("new/deeper")).unwrap();
        fs::write(root.join("new/deeper/made.txt"), "m").unwrap();
        let after = tracker.snapshot();
        assert_eq!(
            changes(&before, &after),
            (
                vec!["new/deeper/made.txt".to_owned()],
                vec!["old/edit.txt".to_owned()],
                vec!["gone.txt".to_owned()]
            )
        );

        // The new directories are watched now: a change deep inside is seen.
        fs::write(root.join("new/deeper/made.txt"), "longer").unwrap();
        let again = tracker.snapshot();
        assert_eq!(
            changes(&after, &again),
            (vec![], vec!["new/deeper/made.txt".to_owned()], vec![])
        );

        // A rename is a deletion and a creation.
        fs::rename(root.join("keep.txt"), root.join("old/kept.txt")).unwrap();
        let renamed = tracker.snapshot();
        assert_eq!(
            changes(&again, &renamed),
            (
                vec!["old/kept.txt".to_owned()],
                vec![],
                vec!["keep.txt".to_owned()]
            )
        );
    }

    #[test]
    fn a_removed_directory_and_a_dropped_workspace_leave_no_watch_behind() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ws");
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::write(root.join("sub/f.txt"), "f").unwrap();
        let watcher = ChangeWatcher::new();
        let tracker = watcher.track(root.clone());
        let before = tracker.snapshot();
        assert_eq!(watcher.watched_directories(), 2);

        fs::remove_dir_all(root.join("sub")).unwrap();
        let after = tracker.snapshot();
        assert_eq!(
            changes(&before, &after),
            (vec![], vec![], vec!["sub/f.txt".to_owned()])
        );
        assert_eq!(
            watcher.watched_directories(),
            1,
            "the removed directory's watch is gone"
        );

        drop(tracker);
        assert_eq!(watcher.watched_directories(), 0);
    }

    #[test]
    fn a_workspace_with_too_many_directories_is_walked_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for n in 0..=MAX_WATCHES_PER_WORKSPACE {
            fs::create_dir(root.join(format!("d{n}"))).unwrap();
        }
        let watcher = ChangeWatcher::new();
        let tracker = watcher.track(root.to_owned());
        let first = tracker.snapshot();
        assert!(watcher.watched_directories() <= MAX_WATCHES_PER_WORKSPACE);
        let second = tracker.snapshot();
        assert!(
            !Arc::ptr_eq(&first, &second),
            "not all watched: walked again"
        );
        fs::write(root.join("d4096/deep.txt"), "x").unwrap();
        assert_eq!(
            changes(&second, &tracker.snapshot()),
            (vec!["d4096/deep.txt".to_owned()], vec![], vec![])
        );

        // Fewer directories again: watched again, so no more walks while nothing changes.
        for n in 10..=MAX_WATCHES_PER_WORKSPACE {
            fs::remove_dir_all(root.join(format!("d{n}"))).unwrap();
        }
        let walked = tracker.snapshot();
        assert!(Arc::ptr_eq(&walked, &tracker.snapshot()));
        assert_eq!(watcher.watched_directories(), 11);
    }

    #[test]
    fn a_watch_lands_on_the_opened_directory_not_on_what_its_name_is_now() {
        let dir = tempfile::tempdir().unwrap();
        let (root, outside) = (dir.path().join("ws"), dir.path().join("outside"));
        fs::create_dir_all(root.join("d")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        let watcher = ChangeWatcher::new();
        let tracker = watcher.track(root.clone());
        let opened = rustix::fs::open(
            root.join("d"),
            rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        // The name now leads outside; the open directory is `d.aside`.
        fs::rename(root.join("d"), root.join("d.aside")).unwrap();
        std::os::unix::fs::symlink("../outside", root.join("d")).unwrap();
        let wd = watcher
            .lock()
            .watch(rustix::fd::AsFd::as_fd(&opened), &tracker.tracked)
            .expect("watched");
        tracker.descriptors.lock().unwrap().insert(wd);

        fs::write(outside.join("x.txt"), "x").unwrap();
        watcher.lock().drain();
        assert_eq!(
            tracker.tracked.changes.load(Ordering::Acquire),
            0,
            "outside is not watched"
        );
        fs::write(root.join("d.aside/y.txt"), "y").unwrap();
        watcher.lock().drain();
        assert!(
            tracker.tracked.changes.load(Ordering::Acquire) > 0,
            "the opened directory is"
        );
    }

    #[test]
    fn two_workspaces_do_not_see_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fs::create_dir_all(&a).unwrap();
        fs::create_dir_all(&b).unwrap();
        let watcher = ChangeWatcher::new();
        let (ta, tb) = (watcher.track(a.clone()), watcher.track(b.clone()));
        let (a0, b0) = (ta.snapshot(), tb.snapshot());
        fs::write(a.join("x.txt"), "x").unwrap();
        assert!(Arc::ptr_eq(&b0, &tb.snapshot()), "b did not change");
        assert_eq!(
            changes(&a0, &ta.snapshot()),
            (vec!["x.txt".to_owned()], vec![], vec![])
        );
    }
}
