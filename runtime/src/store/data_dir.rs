//! The data directory: held by one server at a time, and never invented by mistake.
//!
//! A server takes an exclusive OS lock (`flock`) on `<data_dir>/toolgate.lock` for as long as it
//! runs and writes who it is into the file, so a second server on the same directory stops at
//! once and names the holder (two servers would number the same events and lose one side's).
//! The lock goes away with the process, however it ends. Other commands (`toolgate keys`) share
//! the database through SQLite and never take it.

use super::DB_FILE;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file inside the data directory.
pub const LOCK_FILE: &str = "toolgate.lock";

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("the data directory {path} is in use by another toolgate server ({holder})")]
    InUse { path: PathBuf, holder: String },
    #[error(
        "{path} is not a toolgate data directory (it has files but no {DB_FILE}); \
         choose an empty or new directory, or the one a server already uses"
    )]
    NotToolgate { path: PathBuf },
    #[error(
        "there is no toolgate data directory at {path}; start `toolgate serve --data-dir {path}` \
         once to create it, or pass --init"
    )]
    Missing { path: PathBuf },
    #[error("cannot use the data directory {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A data directory held by this process; dropping it lets another server have it.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DataDirError + '_ {
    move |source| DataDirError::Io {
        path: path.to_owned(),
        source,
    }
}

/// True when `dir` holds a toolgate database.
pub fn is_toolgate(dir: &Path) -> bool {
    dir.join(DB_FILE).is_file()
}

/// Checks that `dir` can become (or already is) a server's data directory: missing (it is
/// created), empty, or a toolgate one. Anything else is somebody's files.
pub fn check_for_server(dir: &Path) -> Result<(), DataDirError> {
    match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(dir)(e)),
        Ok(mut entries) => {
            if is_toolgate(dir) || entries.next().is_none() {
                Ok(())
            } else {
                Err(DataDirError::NotToolgate {
                    path: dir.to_owned(),
                })
            }
        }
    }
}

/// For commands that work on a server's data (keys): the directory must already be a toolgate
/// one, unless `init` asks to create it.
pub fn check_existing(dir: &Path, init: bool) -> Result<(), DataDirError> {
    if is_toolgate(dir) {
        return Ok(());
    }
    if init {
        return check_for_server(dir);
    }
    Err(DataDirError::Missing {
        path: dir.to_owned(),
    })
}

/// Takes the data directory for a server (which must exist), recording `holder` (who this
/// process is: pid, address) for whoever finds it taken.
pub fn lock(dir: &Path, holder: &str) -> Result<DataDirLock, DataDirError> {
    let path = dir.join(LOCK_FILE);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io(&path))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => {
            let mut text = String::new();
            let _ = (&file).take(4096).read_to_string(&mut text);
            let holder = match text.trim() {
                "" => "it has not said who it is yet".to_owned(),
                text => text.replace('\n', ", "),
            };
            return Err(DataDirError::InUse {
                path: dir.to_owned(),
                holder,
            });
        }
        Err(e) => return Err(io(&path)(e.into())),
    }
    // Only the holder writes the file, so what it says is always the current holder's.
    file.set_len(0).map_err(io(&path))?;
    file.rewind().map_err(io(&path))?;
    writeln!(file, "{holder}").map_err(io(&path))?;
    Ok(DataDirLock {
        _file: file,
        path: dir.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_holder_and_the_first_release_frees_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock(dir.path(), "pid 42, listening on 127.0.0.1:1").unwrap();
        let error = lock(dir.path(), "pid 43").unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("in use by another toolgate server"),
            "{message}"
        );
        assert!(
            message.contains("pid 42, listening on 127.0.0.1:1"),
            "{message}"
        );
        drop(first);
        let second = lock(dir.path(), "pid 43").unwrap();
        let said = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert_eq!(said, "pid 43\n");
        drop(second);
    }

    #[test]
    fn somebody_elses_files_are_not_a_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        check_for_server(dir.path()).unwrap();
        check_for_server(&dir.path().join("new")).unwrap();
        std::fs::write(dir.path().join("thesis.tex"), "...").unwrap();
        assert!(matches!(
            check_for_server(dir.path()),
            Err(DataDirError::NotToolgate { .. })
        ));
        std::fs::write(dir.path().join(DB_FILE), "").unwrap();
        check_for_server(dir.path()).unwrap();
    }

    #[test]
    fn keys_need_an_existing_data_directory_unless_asked_to_create_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no/such/dir");
        let error = check_existing(&missing, false).unwrap_err();
        assert!(matches!(error, DataDirError::Missing { .. }));
        assert!(error.to_string().contains("--init"));
        check_existing(&missing, true).unwrap();
        check_existing(dir.path(), false).unwrap_err();
    }
}
