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
        let walked = confined::walk(root, MAX_ENTRIES, |entry, dir| match dir {
            Some(dir) => visit(dir),
            None if entry.kind != EntryKind::Dir => {
                files.insert(entry.path.clone(), (entry.size, entry.modified));
            }
            None => {}
        });
        Self {
            files,
            // A workspace that cannot be opened is as good as empty, and not to be trusted.
            partial: walked.map_or(true, |outcome| outcome.partial),
        }
    }

    /// Whether the walk stopped before the end of the tree.
    pub fn is_partial(&self) -> bool {
        self.partial
    }

    /// What changed from `self` to `after`.
    pub fn changes(&self, after: &Snapshot) -> FileChanges {
        let mut changes = FileChanges::default();
        for (path, meta) in &after.files {
            match self.files.get(path) {
                None => changes.created.push(path.clone()),
                Some(before) if before != meta => changes.modified.push(path.clone()),
                Some(_) => {}
            }
        }
        changes.deleted = self
            .files
            .keys()
            .filter(|p| !after.files.contains_key(*p))
            .cloned()
            .collect();
        changes
    }
}

/// The payload of a `file.changed` event.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct FileChanges {
    pub created: Vec<String>,
    pub modified: Vec<String>,
    pub deleted: Vec<String>,
}

impl FileChanges {
    pub fn is_empty(&self) -> bool {
        self.created.is_empty() && self.modified.is_empty() && self.deleted.is_empty()
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
    }
}
