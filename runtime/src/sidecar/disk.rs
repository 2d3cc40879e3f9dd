//! A session's disk quota: its size from the session's resources, and its usage
//! rebuilt from the workspace when a session comes back after a restart.

use crate::confined::EntryKind;
use crate::policy::ResourceRequest;
use crate::sandbox::{DiskQuota, InodeKey};
use serde::Serialize;
use std::path::Path;

/// A session's quota in bytes (`disk_mb` of its resources).
pub(crate) fn limit(resources: &ResourceRequest) -> u64 {
    resources.disk_mb.saturating_mul(1 << 20)
}

/// Entries a rebuild looks at, at most; a workspace holding more is charged for
/// what was seen (its quota is far smaller than that many blocks anyway).
const MAX_REBUILD_ENTRIES: usize = 1_000_000;

/// A quota charged for everything the workspace at `root` holds now, walked by
/// file descriptor beneath the root, links counted and never followed.
pub(crate) fn rebuilt(root: &Path, limit: u64) -> DiskQuota {
    let mut entries: Vec<(InodeKey, u64)> = Vec::new();
    let walked = crate::confined::walk(root, MAX_REBUILD_ENTRIES, |entry, _| {
        // The root itself is not charged.
        if entry.path.is_empty() {
            return;
        }
        let size = if entry.kind == EntryKind::File {
            entry.size
        } else {
            0
        };
        entries.push(((entry.dev, entry.ino), size));
    });
    match walked {
        Ok(outcome) if outcome.partial => {
            tracing::warn!(workspace = %root.display(), "the workspace could not be walked whole; its disk use is undercounted")
        }
        Ok(_) => {}
        Err(error) => {
            tracing::warn!(workspace = %root.display(), %error, "cannot walk the workspace; its disk use starts at zero")
        }
    }
    DiskQuota::rebuilt(limit, entries)
}

/// Bytes free for unprivileged users on the filesystem that holds (or will hold) `dir`.
pub(crate) fn free_space(dir: &Path) -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        // Before the first session the directory may not exist yet: ask its nearest ancestor.
        let stat = dir
            .ancestors()
            .find_map(|dir| rustix::fs::statvfs(dir).ok())?;
        Some(stat.f_bavail.saturating_mul(stat.f_frsize))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = dir;
        None
    }
}

/// A session's disk use as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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
