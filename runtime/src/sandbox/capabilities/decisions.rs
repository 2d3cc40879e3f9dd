use super::budget::{OutputBudget, OutputLimitExceeded, json_len};
use crate::gate::{CapabilityRequest, Decision, DecisionRecord, Gate};
use std::sync::{Arc, Mutex};

/// The decisions taken during one task, shared by the hooks that ask the gate
/// and read by the executor afterwards. Each decision is a record of the task's
/// log (it becomes an event), charged to the task's output budget before the
/// gate is asked: a task asking in a loop runs out of budget, not the store.
#[derive(Clone)]
pub(crate) struct DecisionLog {
    records: Arc<Mutex<Vec<DecisionRecord>>>,
    budget: Arc<OutputBudget>,
}

impl DecisionLog {
    pub fn new(budget: Arc<OutputBudget>) -> Self {
        Self {
            records: Arc::default(),
            budget,
        }
    }

    /// Asks `gate` about `request` and records the answer, if the budget has room for it.
    pub fn ask(
        &self,
        gate: &dyn Gate,
        request: CapabilityRequest,
    ) -> Result<Decision, OutputLimitExceeded> {
        self.budget.charge_record(json_len(&request))?;
        let record = DecisionRecord::ask(gate, request);
        let decision = record.decision.clone();
        self.push(record);
        Ok(decision)
    }

    /// Records a refusal the host made without asking the gate.
    pub fn refuse(
        &self,
        request: CapabilityRequest,
        reason: String,
    ) -> Result<(), OutputLimitExceeded> {
        self.budget.charge_record(json_len(&request))?;
        self.push(DecisionRecord {
            request,
            decision: Decision::deny(reason),
            elapsed_us: 0,
        });
        Ok(())
    }

    pub fn snapshot(&self) -> Vec<DecisionRecord> {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn push(&self, record: DecisionRecord) {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(record);
    }
}
