//! Mapping `std::io::Error` to tool errors.
//!
//! WASI reports a capability refusal (`not-permitted`, `access`, a symlink
//! leading outside a preopen, a read-only grant) as PermissionDenied: that is
//! the host saying no, so the agent sees `denied` rather than a failure.

use crate::ToolError;
use std::io::{Error, ErrorKind};

/// Maps an error from an operation on `path` (as the agent wrote it).
pub fn error(path: &str, err: &Error) -> ToolError {
    match err.kind() {
        ErrorKind::PermissionDenied => {
            ToolError::Denied(format!("access to {path} was refused: {err}"))
        }
        ErrorKind::NotFound => ToolError::Failed(format!("{path} not found")),
        _ => ToolError::Failed(format!("{path}: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_variants() {
        let denied = error("x", &Error::from(ErrorKind::PermissionDenied));
        assert!(matches!(denied, ToolError::Denied(_)));
        let missing = error("x", &Error::from(ErrorKind::NotFound));
        assert_eq!(missing, ToolError::Failed("x not found".into()));
        let other = error("x", &Error::other("boom"));
        assert_eq!(other, ToolError::Failed("x: boom".into()));
    }
}
