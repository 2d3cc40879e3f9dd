//! Session workspaces and what a task changed in them.

use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Entries (files and directories) the snapshot looks at, at most; past it the change list
/// is partial. Directories count too, so a tree of empty directories cannot make a walk long.
const MAX_ENTRIES: usize = 20_000;

/// Size and modification time of every file under a directory.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Snapshot {
    files: BTreeMap<String, (u64, Option<SystemTime>)>,
    /// The walk stopped at [`MAX_ENTRIES`]: some of the tree is not in it.
    partial: bool,
}

impl Snapshot {
    pub fn take(root: &Path) -> Self {
        Self::take_visiting(root, |_| {})
    }

    /// Like [`Snapshot::take`], calling `visit` with each directory before reading it.
    pub fn take_visiting(root: &Path, mut visit: impl FnMut(&Path)) -> Self {
        let mut files = BTreeMap::new();
        let mut stack: Vec<PathBuf> = vec![root.to_owned()];
        let mut seen = 0usize;
        while let Some(dir) = stack.pop() {
            visit(&dir);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                seen += 1;
                if seen > MAX_ENTRIES {
                    return Self {
                        files,
                        partial: true,
                    };
                }
                let Ok(meta) = entry.metadata() else { continue };
                let path = entry.path();
                if meta.is_dir() {
                    stack.push(path);
                } else if let Ok(relative) = path.strip_prefix(root) {
                    files.insert(
                        relative.to_string_lossy().into_owned(),
                        (meta.len(), meta.modified().ok()),
                    );
                }
            }
        }
        Self {
            files,
            partial: false,
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
