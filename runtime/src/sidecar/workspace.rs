//! Session workspaces and what a task changed in them.

use crate::confined::{self, EntryKind};
use serde::Serialize;
use std::collections::BTreeMap;
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::time::SystemTime;

/// Entries (files and directories) the snapshot looks at, at most; past it the change list
/// is partial. Directories count too, so a tree of empty directories cannot make a walk long.
const MAX_ENTRIES: usize = 20_000;

/// Bytes of paths a snapshot keeps, at most: paths can be long (128 levels of 255-byte
/// names), and a snapshot is held in memory per workspace.
const MAX_PATH_BYTES: usize = 4 << 20;

/// Names a `file.changed` event lists, at most, and bytes of names; the rest are counted
/// in `omitted`. The event is stored and sent to every subscriber, so a task making
/// thousands of long names must not make it huge.
pub const MAX_LISTED_CHANGES: usize = 1000;
pub const MAX_LISTED_BYTES: usize = 64 << 10;

/// Size and modification time of every file (and link, not followed) under a directory.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Snapshot {
    files: BTreeMap<String, (u64, Option<SystemTime>)>,
    /// The walk did not see the whole tree: it stopped at [`MAX_ENTRIES`], or a directory
    /// was too deep or changed while it was walked.
    partial: bool,
}

impl Snapshot {
    pub fn take(root: &Path) -> Self {
        Self::take_visiting(root, |_| {})
    }

    /// Like [`Snapshot::take`], calling `visit` with each directory, open, before reading it.
    /// The walk is confined beneath `root` by file descriptor (see [`confined::walk`]): a tool
    /// that swaps a directory for a link while it runs cannot lead it outside.
    pub fn take_visiting(root: &Path, mut visit: impl FnMut(BorrowedFd<'_>)) -> Self {
        let mut files = BTreeMap::new();
        let (mut path_bytes, mut too_long) = (0usize, false);
        let walked = confined::walk(root, MAX_ENTRIES, |entry, dir| match dir {
            Some(dir) => visit(dir),
            None if entry.kind != EntryKind::Dir => {
                path_bytes += entry.path.len();
                if path_bytes > MAX_PATH_BYTES {
                    too_long = true;
                } else {
                    files.insert(entry.path.clone(), (entry.size, entry.modified));
                }
            }
            None => {}
        });
        Self {
            files,
            // A workspace that cannot be opened is as good as empty, and not to be trusted.
            partial: too_long || walked.map_or(true, |outcome| outcome.partial),
        }
    }

    /// Whether the walk stopped before the end of the tree.
    pub fn is_partial(&self) -> bool {
        self.partial
    }

    /// What changed from `self` to `after`: at most [`MAX_LISTED_CHANGES`] names and
    /// [`MAX_LISTED_BYTES`] of them, the rest counted.
    pub fn changes(&self, after: &Snapshot) -> FileChanges {
        let mut changes = FileChanges::default();
        for (path, meta) in &after.files {
            match self.files.get(path) {
                None => changes.list(Change::Created, path),
                Some(before) if before != meta => changes.list(Change::Modified, path),
                Some(_) => {}
            }
        }
        for path in self.files.keys() {
            if !after.files.contains_key(path) {
                changes.list(Change::Deleted, path);
            }
        }
        changes
    }
}

/// The payload of a `file.changed` event.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct FileChanges {
    pub created: Vec<String>,
    pub modified: Vec<String>,
    pub deleted: Vec<String>,
    /// Changes past the bounds of the lists, counted but not named.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schema(required = false, minimum = 1)]
    pub omitted: u64,
    #[serde(skip)]
    listed_bytes: usize,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

enum Change {
    Created,
    Modified,
    Deleted,
}

impl FileChanges {
    pub fn is_empty(&self) -> bool {
        self.created.is_empty()
            && self.modified.is_empty()
            && self.deleted.is_empty()
            && self.omitted == 0
    }

    fn list(&mut self, change: Change, path: &str) {
        let listed = self.created.len() + self.modified.len() + self.deleted.len();
        if listed >= MAX_LISTED_CHANGES || self.listed_bytes + path.len() > MAX_LISTED_BYTES {
            self.omitted += 1;
            return;
        }
        self.listed_bytes += path.len();
        let list = match change {
            Change::Created => &mut self.created,
            Change::Modified => &mut self.modified,
            Change::Deleted => &mut self.deleted,
        };
        list.push(path.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_list_created_modified_and_deleted_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("keep.txt"), "a").unwrap();
        std::fs::write(dir.path().join("edit.txt"), "a").unwrap();
        std::fs::write(dir.path().join("gone.txt"), "a").unwrap();
        let before = Snapshot::take(dir.path());
        std::fs::write(dir.path().join("edit.txt"), "longer").unwrap();
        std::fs::remove_file(dir.path().join("gone.txt")).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/new.txt"), "n").unwrap();
        let changes = before.changes(&Snapshot::take(dir.path()));
        assert_eq!(changes.created, ["sub/new.txt"]);
        assert_eq!(changes.modified, ["edit.txt"]);
        assert_eq!(changes.deleted, ["gone.txt"]);
        assert_eq!(changes.omitted, 0);
    }

    #[test]
    fn change_lists_are_bounded_and_count_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let before = Snapshot::take(dir.path());
        let long = "n".repeat(200);
        for i in 0..(MAX_LISTED_CHANGES + 500) {
            std::fs::write(dir.path().join(format!("{long}{i}")), "").unwrap();
        }
        let changes = before.changes(&Snapshot::take(dir.path()));
        let listed: usize = changes.created.iter().map(String::len).sum();
        assert!(listed <= MAX_LISTED_BYTES);
        assert_eq!(
            changes.created.len() as u64 + changes.omitted,
            (MAX_LISTED_CHANGES + 500) as u64
        );
        let json = serde_json::to_string(&changes).unwrap();
        assert!(json.len() < MAX_LISTED_BYTES + 8192, "{}", json.len());
    }
}
