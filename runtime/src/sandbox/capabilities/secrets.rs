//! Secrets: the granted ones are handed to the host interface, which releases
//! a value only after the gate allowed that read.

use super::{StoreParts, TaskSpec};

pub(crate) fn apply(spec: &TaskSpec<'_>, parts: &mut StoreParts) {
    parts.host.secrets = spec.grants.secrets.clone();
}
