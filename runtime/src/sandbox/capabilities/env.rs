//! Environment variables: exactly the granted ones, never the host's.

use super::{StoreParts, TaskSpec};

pub(crate) fn apply(spec: &TaskSpec<'_>, parts: &mut StoreParts) {
    if !spec.grants.env.is_empty() {
        parts.wasi.envs(&spec.grants.env);
    }
}
