//! What a task may add to its outputs and to its session's log: bytes of stdout, stderr
//! and host records together, and a number of host records (log and progress reports,
//! capability decisions), each of which becomes an event. A record costs at least
//! [`RECORD_COST`] bytes, so a flood of empty records runs out of budget like any other.

use crate::sandbox::error::{OutputBound, TaskError};
use std::io;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes charged for every host record on top of what it carries: about what one empty
/// event costs to number, store and send.
pub(crate) const RECORD_COST: u64 = 64;

/// The name host records are charged under.
pub(crate) const LOG_OUTPUT: &str = "log output";

/// A task's output budget, shared by its streams and host interfaces.
pub(crate) struct OutputBudget {
    bytes_limit: u64,
    records_limit: u64,
    bytes: AtomicU64,
    records: AtomicU64,
    /// The first bound crossed; every charge after it fails too.
    exceeded: OnceLock<OutputLimitExceeded>,
}

/// Raised as a trap when a task writes past its output budget.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what} exceeded its limit of {limit}")]
pub struct OutputLimitExceeded {
    pub what: &'static str,
    pub limit: OutputBound,
}

impl From<OutputLimitExceeded> for TaskError {
    fn from(e: OutputLimitExceeded) -> Self {
        TaskError::OutputTooLarge {
            what: e.what.into(),
            limit: e.limit,
        }
    }
}

impl OutputBudget {
    pub fn new(bytes_limit: u64, records_limit: u64) -> Self {
        Self {
            bytes_limit,
            records_limit,
            bytes: AtomicU64::new(0),
            records: AtomicU64::new(0),
            exceeded: OnceLock::new(),
        }
    }

    /// Takes `bytes` from the budget, or fails (remembering who overflowed it).
    pub fn charge(&self, bytes: u64, what: &'static str) -> Result<(), OutputLimitExceeded> {
        self.check()?;
        let used = self
            .bytes
            .fetch_add(bytes, Ordering::Relaxed)
            .saturating_add(bytes);
        if used > self.bytes_limit {
            return Err(self.exceed(what, OutputBound::Bytes(self.bytes_limit)));
        }
        Ok(())
    }

    /// Takes one host record carrying `payload` bytes: one of the records and
    /// [`RECORD_COST`]` + payload` bytes.
    pub fn charge_record(&self, payload: u64) -> Result<(), OutputLimitExceeded> {
        self.check()?;
        let records = self.records.fetch_add(1, Ordering::Relaxed) + 1;
        if records > self.records_limit {
            return Err(self.exceed(LOG_OUTPUT, OutputBound::Records(self.records_limit)));
        }
        self.charge(RECORD_COST.saturating_add(payload), LOG_OUTPUT)
    }

    /// What first went over the budget, if anything did.
    pub fn exceeded(&self) -> Option<OutputLimitExceeded> {
        self.exceeded.get().cloned()
    }

    pub fn is_exceeded(&self) -> bool {
        self.exceeded.get().is_some()
    }

    fn check(&self) -> Result<(), OutputLimitExceeded> {
        match self.exceeded.get() {
            Some(first) => Err(first.clone()),
            None => Ok(()),
        }
    }

    fn exceed(&self, what: &'static str, limit: OutputBound) -> OutputLimitExceeded {
        self.exceeded
            .get_or_init(|| OutputLimitExceeded { what, limit })
            .clone()
    }
}

/// The size of `value` as JSON, without building the text.
pub(crate) fn json_len(value: &impl serde::Serialize) -> u64 {
    struct Count(u64);
    impl io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_records_cost_a_fixed_amount() {
        let budget = OutputBudget::new(10 * RECORD_COST, 1000);
        for _ in 0..10 {
            budget.charge_record(0).unwrap();
        }
        let e = budget.charge_record(0).unwrap_err();
        assert_eq!(e.limit, OutputBound::Bytes(10 * RECORD_COST));
        assert_eq!(e.what, LOG_OUTPUT);
    }

    #[test]
    fn records_are_counted_and_the_first_overflow_sticks() {
        let budget = OutputBudget::new(1 << 20, 3);
        for _ in 0..3 {
            budget.charge_record(0).unwrap();
        }
        let e = budget.charge_record(0).unwrap_err();
        assert_eq!(e.limit, OutputBound::Records(3));
        assert_eq!(e.to_string(), "log output exceeded its limit of 3 records");
        // Past either bound every charge fails, bytes too, naming the first overflow.
        let again = budget.charge(1, "stdout").unwrap_err();
        assert_eq!(again.limit, OutputBound::Records(3));
        assert_eq!(budget.exceeded().unwrap().limit, OutputBound::Records(3));
    }
}
