//! The sidecars an orchestrator runs sessions on, and which one takes the next session.

use super::Sidecar;
use super::local::LocalSidecar;
use super::wire::SidecarState;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The in-process sidecar's id.
pub const LOCAL: &str = "local";

/// A sidecar as `GET /v1/hosts` and the logs show it.
#[derive(Debug, Clone, Serialize)]
pub struct SidecarStatus {
    pub id: String,
    pub state: SidecarState,
    pub local: bool,
}

pub struct SidecarPool {
    local: Option<LocalSidecar>,
    /// The local sidecar (if on) first, then the configured ones in config order.
    all: Vec<Arc<dyn Sidecar>>,
    next: AtomicUsize,
}

impl SidecarPool {
    pub fn new(local: Option<LocalSidecar>, remote: Vec<Arc<dyn Sidecar>>) -> Self {
        let mut all: Vec<Arc<dyn Sidecar>> = Vec::new();
        if let Some(local) = &local {
            all.push(Arc::new(local.clone()));
        }
        all.extend(remote);
        Self {
            local,
            all,
            next: AtomicUsize::new(0),
        }
    }

    /// The in-process sidecar, when it is on.
    pub fn local(&self) -> Option<&LocalSidecar> {
        self.local.as_ref()
    }

    pub fn get(&self, id: &str) -> Option<Arc<dyn Sidecar>> {
        self.all.iter().find(|s| s.id() == id).cloned()
    }

    /// The ready sidecars, starting with the one whose turn it is (round robin).
    pub fn candidates(&self) -> Vec<Arc<dyn Sidecar>> {
        let n = self.all.len();
        if n == 0 {
            return Vec::new();
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        (0..n)
            .map(|i| self.all[(start + i) % n].clone())
            .filter(|s| s.state() == SidecarState::Ready)
            .collect()
    }

    pub fn status(&self) -> Vec<SidecarStatus> {
        self.all
            .iter()
            .map(|s| SidecarStatus {
                id: s.id().to_owned(),
                state: s.state(),
                local: s.id() == LOCAL && self.local.is_some(),
            })
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }
}
