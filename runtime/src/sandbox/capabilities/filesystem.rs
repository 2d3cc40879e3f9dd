//! Preopened directories, read-only or read-write, and the working directory
//! relative paths resolve against. WASI's path resolution keeps every access
//! inside a preopen (`..`, absolute paths and escaping symlinks are refused).

use super::{StoreParts, TaskSpec};
use crate::sandbox::error::TaskError;
use crate::sandbox::quota_fs::DiskState;
use wasmtime_wasi::FsPerms;

pub(crate) fn apply(spec: &TaskSpec<'_>, parts: &mut StoreParts) -> Result<(), TaskError> {
    for dir in &spec.grants.dirs {
        let perms = if dir.writable {
            FsPerms::ReadWrite
        } else {
            FsPerms::ReadOnly
        };
        parts
            .wasi
            .preopened_dir(&dir.host, &dir.guest, perms)
            .map_err(|e| TaskError::InvalidInput {
                message: format!(
                    "granted directory {} cannot be opened: {e}",
                    dir.host.display()
                ),
                path: None,
            })?;
    }
    let cwd = spec
        .grants
        .cwd
        .as_deref()
        .or_else(|| spec.grants.dirs.first().map(|d| d.guest.as_str()));
    if let Some(cwd) = cwd {
        parts.wasi.initial_cwd(cwd);
    }
    Ok(())
}

/// The preopens whose writes count against a disk quota.
pub(crate) fn quotas(spec: &TaskSpec<'_>) -> DiskState {
    DiskState::new(
        spec.grants
            .dirs
            .iter()
            .filter_map(|dir| Some((dir.guest.clone(), dir.quota.clone()?)))
            .collect(),
        spec.events.cloned(),
    )
}
