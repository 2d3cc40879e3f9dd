//! Plugins that failed to load, remembered by the digest of their bytes: using them again
//! answers the same error at once instead of compiling and describing them again. Other
//! bytes (a fixed file, a new upload) are a new try.

use super::error::PluginError;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Failures remembered at most; past it the oldest is forgotten (and would be tried again).
const MAX_REMEMBERED: usize = 1024;

#[derive(Default)]
pub(crate) struct FailedLoads {
    /// Digest → the failure, with the order they came in (oldest first).
    inner: Mutex<(HashMap<String, PluginError>, VecDeque<String>)>,
}

impl FailedLoads {
    /// The failure of the bytes of `digest`, told of the plugin from `origin`.
    pub fn get(&self, digest: &str, origin: &str) -> Option<PluginError> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.0.get(digest).map(|e| e.clone().with_origin(origin))
    }

    /// Remembers `error` for `digest` if it follows from the bytes alone.
    pub fn remember(&self, digest: &str, error: &PluginError) {
        if !error.is_lasting() {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (failures, order) = &mut *inner;
        if failures.insert(digest.to_owned(), error.clone()).is_none() {
            order.push_back(digest.to_owned());
        }
        while order.len() > MAX_REMEMBERED {
            if let Some(oldest) = order.pop_front() {
                failures.remove(&oldest);
            }
        }
    }

    /// How many failures are remembered.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn not_wasm(origin: &str) -> PluginError {
        PluginError::NotWasm {
            origin: origin.into(),
        }
    }

    #[test]
    fn a_failure_is_told_of_the_plugin_asking() {
        let failures = FailedLoads::default();
        failures.remember("d1", &not_wasm("/secret/dir/a.wasm"));
        let again = failures.get("d1", "plugin `b`").unwrap();
        assert_eq!(again.code(), "not_wasm");
        assert!(!again.to_string().contains("/secret"), "{again}");
        assert!(again.to_string().contains("plugin `b`"), "{again}");
        assert!(failures.get("d2", "x").is_none());
    }

    #[test]
    fn passing_failures_are_not_remembered() {
        let failures = FailedLoads::default();
        let unavailable = PluginError::Unavailable {
            origin: "p".into(),
            message: "shutting down".into(),
        };
        failures.remember("d", &unavailable);
        assert!(failures.get("d", "p").is_none());
    }

    #[test]
    fn the_oldest_is_forgotten_past_the_bound() {
        let failures = FailedLoads::default();
        for i in 0..=MAX_REMEMBERED {
            failures.remember(&format!("d{i}"), &not_wasm("p"));
        }
        assert_eq!(failures.len(), MAX_REMEMBERED);
        assert!(failures.get("d0", "p").is_none());
        assert!(failures.get(&format!("d{MAX_REMEMBERED}"), "p").is_some());
    }
}
