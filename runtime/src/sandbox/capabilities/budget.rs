use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes a task may write to stdout, stderr and host logs together.
pub(crate) struct OutputBudget {
    limit: u64,
    used: AtomicU64,
    exceeded_by: Mutex<Option<&'static str>>,
}

/// Raised as a trap when a task writes past its output budget.
#[derive(Debug, thiserror::Error)]
#[error("{what} exceeded its limit of {limit} bytes")]
pub struct OutputLimitExceeded {
    pub what: &'static str,
    pub limit: u64,
}

impl OutputBudget {
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            used: AtomicU64::new(0),
            exceeded_by: Mutex::new(None),
        }
    }

    /// Takes `bytes` from the budget, or fails (remembering who overflowed it).
    pub fn charge(&self, bytes: u64, what: &'static str) -> Result<(), OutputLimitExceeded> {
        let used = self
            .used
            .fetch_add(bytes, Ordering::Relaxed)
            .saturating_add(bytes);
        if used > self.limit {
            self.exceeded_by
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(what);
            return Err(OutputLimitExceeded {
                what,
                limit: self.limit,
            });
        }
        Ok(())
    }

    /// What first went over the budget, if anything did.
    pub fn exceeded(&self) -> Option<OutputLimitExceeded> {
        let what = (*self.exceeded_by.lock().unwrap_or_else(|e| e.into_inner()))?;
        Some(OutputLimitExceeded {
            what,
            limit: self.limit,
        })
    }
}
