use crate::gate::DecisionRecord;
use std::sync::{Arc, Mutex};

/// The decisions taken during one task, shared by the hooks that ask the gate
/// and read by the executor afterwards.
#[derive(Clone, Default)]
pub(crate) struct DecisionLog(Arc<Mutex<Vec<DecisionRecord>>>);

impl DecisionLog {
    pub fn push(&self, record: DecisionRecord) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(record);
    }

    pub fn snapshot(&self) -> Vec<DecisionRecord> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
