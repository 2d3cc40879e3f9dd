//! Directories outside the session workspace: each is asked of the gate when
//! the task starts (`read_file`, and `write_file` if it wants to write), then
//! preopened read-write, read-only, or not at all, as decided.

use super::{StoreParts, TaskSpec};
use crate::gate::CapabilityRequest;
use crate::sandbox::error::TaskError;
use wasmtime_wasi::FsPerms;

pub(crate) fn apply(spec: &TaskSpec<'_>, parts: &mut StoreParts) -> Result<(), TaskError> {
    for dir in &spec.grants.outside {
        let path = dir.host.display().to_string();
        let decisions = &parts.host.decisions;
        let read = decisions.ask(
            &**spec.gate,
            CapabilityRequest::ReadFile { path: path.clone() },
        )?;
        if !read.allowed {
            continue;
        }
        let may_write = dir.writable
            && decisions
                .ask(&**spec.gate, CapabilityRequest::WriteFile { path })?
                .allowed;
        let perms = if may_write {
            FsPerms::ReadWrite
        } else {
            FsPerms::ReadOnly
        };
        parts
            .wasi
            .preopened_dir(&dir.host, &dir.guest, perms)
            .map_err(|e| TaskError::InvalidInput {
                message: format!("directory {} cannot be opened: {e}", dir.host.display()),
                path: None,
            })?;
    }
    Ok(())
}
