//! Depth-first directory walk in name order, shared by `list` and `search`.
//! Symlinks are reported but never followed, so a link cannot loop the walk
//! or lead it elsewhere; unreadable subdirectories are skipped.

use std::fs;
use std::io;
use std::path::Path;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "dir",
            Kind::Symlink => "symlink",
        }
    }
}

pub struct Entry<'a> {
    /// Path below the walk's root, `/`-separated.
    pub rel: &'a str,
    /// Guest path to open it with.
    pub full: &'a Path,
    pub kind: Kind,
    pub size: u64,
}

/// What the visitor wants next.
pub enum Flow {
    Continue,
    /// Do not descend into this directory.
    Skip,
    Stop,
}

/// Visits the entries of `root` (and below it when `recursive`). Only an
/// error reading `root` itself is returned.
pub fn walk(root: &Path, recursive: bool, visit: &mut dyn FnMut(&Entry) -> Flow) -> io::Result<()> {
    walk_dir(root, "", recursive, visit).map(|_| ())
}

/// Returns false once the visitor asked to stop.
fn walk_dir(
    dir: &Path,
    rel: &str,
    recursive: bool,
    visit: &mut dyn FnMut(&Entry) -> Flow,
) -> io::Result<bool> {
    let mut children: Vec<(String, Kind, u64)> = fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            // DirEntry::metadata does not follow symlinks.
            let (kind, size) = match e.metadata() {
                Ok(m) if m.file_type().is_symlink() => (Kind::Symlink, m.len()),
                Ok(m) if m.is_dir() => (Kind::Dir, 0),
                Ok(m) => (Kind::File, m.len()),
                Err(_) => (Kind::File, 0),
            };
            (name, kind, size)
        })
        .collect();
    children.sort_by(|a, b| a.0.cmp(&b.0));

    for (name, kind, size) in children {
        let child_rel = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let full = dir.join(&name);
        let entry = Entry {
            rel: &child_rel,
            full: &full,
            kind,
            size,
        };
        match visit(&entry) {
            Flow::Stop => return Ok(false),
            Flow::Skip => continue,
            Flow::Continue => {}
        }
        if recursive && kind == Kind::Dir {
            // An unreadable subdirectory is skipped, not fatal.
            if let Ok(false) = walk_dir(&full, &child_rel, recursive, visit) {
                return Ok(false);
            }
        }
    }
    Ok(true)
}
