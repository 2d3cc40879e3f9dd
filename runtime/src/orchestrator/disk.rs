//! A session's disk quota: its size from the session's resources, and its usage
//! rebuilt from the workspace when a session comes back after a restart.

use crate::policy::ResourceRequest;
use crate::sandbox::{DiskQuota, InodeKey};
use serde::Serialize;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A session's quota in bytes (`disk_mb` of its resources).
pub(super) fn limit(resources: &ResourceRequest) -> u64 {
    resources.disk_mb.saturating_mul(1 << 20)
}

/// A quota charged for everything the workspace at `root` holds now. Runs before
/// any task of the session does, so nothing moves while it walks; links are
/// counted, never followed.
pub(super) fn rebuilt(root: &Path, limit: u64) -> DiskQuota {
    let mut entries: Vec<(InodeKey, u64)> = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(children) = std::fs::read_dir(&dir) else {
            continue;
        };
        for child in children.flatten() {
            let Ok(meta) = child.metadata() else { continue };
            let size = if meta.is_file() { meta.len() } else { 0 };
            entries.push(((meta.dev(), meta.ino()), size));
            if meta.is_dir() {
                stack.push(child.path());
            }
        }
    }
    DiskQuota::rebuilt(limit, entries)
}

/// Bytes free for unprivileged users on the filesystem holding `dir`.
pub(super) fn free_space(dir: &Path) -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let stat = rustix::fs::statvfs(dir).ok()?;
        Some(stat.f_bavail.saturating_mul(stat.f_frsize))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = dir;
        None
    }
}

/// A session's disk use as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DiskUsage {
    /// Bytes charged: every file, directory and link in whole 4 KiB blocks, at least one.
    pub used_bytes: u64,
    pub quota_bytes: u64,
}

impl From<&DiskQuota> for DiskUsage {
    fn from(quota: &DiskQuota) -> Self {
        Self {
            used_bytes: quota.used(),
            quota_bytes: quota.limit(),
        }
    }
}
