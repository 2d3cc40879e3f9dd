//! Open connections are file descriptors: the connection cap has to fit under the process's
//! open-file limit, or `accept` fails (and so does everything else that opens a file) before
//! the cap is reached.

/// Descriptors kept for everything but connections: the store, plugins, workspaces, logs.
const RESERVED: u64 = 256;

/// The connection cap that fits: raises the soft open-file limit towards the hard one if
/// `wanted` connections need it, and lowers the cap (with a warning) if even that is too few.
pub(crate) fn fit_connection_cap(wanted: usize) -> usize {
    match open_file_limit(wanted as u64 + RESERVED) {
        Some(limit) if limit < wanted as u64 + RESERVED => {
            let fits = limit.saturating_sub(RESERVED).max(1) as usize;
            tracing::warn!(
                max_connections = wanted,
                open_file_limit = limit,
                using = fits,
                "max_connections does not fit under the open-file limit (ulimit -n); using fewer"
            );
            fits
        }
        _ => wanted,
    }
}

/// The soft open-file limit after trying to raise it to `needed`; `None` if unlimited or
/// unknown.
#[cfg(target_os = "linux")]
fn open_file_limit(needed: u64) -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let current = limit.current?;
    if current >= needed {
        return Some(current);
    }
    let raised = limit.maximum.map_or(needed, |max| max.min(needed));
    if raised > current
        && setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(raised),
                maximum: limit.maximum,
            },
        )
        .is_ok()
    {
        return Some(raised);
    }
    Some(current)
}

#[cfg(not(target_os = "linux"))]
fn open_file_limit(_needed: u64) -> Option<u64> {
    None
}
