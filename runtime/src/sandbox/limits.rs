use serde::{Deserialize, Serialize};
use std::time::Duration;
use wasmtime::ResourceLimiter;

/// Hard bounds on one task. A caller may ask for less than the defaults; the
/// engine clamps every request to its own ceilings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Fuel units (roughly one per wasm instruction).
    pub fuel: u64,
    /// Linear memory, all memories of the instance together.
    pub memory_bytes: u64,
    /// Wall-clock deadline, from the start of instantiation.
    #[serde(rename = "timeout_ms", with = "millis")]
    pub timeout: Duration,
    /// Size of the tool's result text.
    pub output_bytes: u64,
    /// stdout, stderr and host log records together.
    pub log_bytes: u64,
    /// Host records: log and progress reports and capability decisions, each of which
    /// becomes an event of the session (and costs at least 64 of `log_bytes`).
    #[serde(default = "default_log_records")]
    pub log_records: u64,
    /// Core and component instances, tables and table elements.
    pub max_instances: usize,
    pub max_tables: usize,
    pub max_table_elements: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: 2_000_000_000,
            memory_bytes: 128 << 20,
            timeout: Duration::from_secs(10),
            output_bytes: 1 << 20,
            log_bytes: 1 << 20,
            log_records: default_log_records(),
            max_instances: 64,
            max_tables: 64,
            max_table_elements: 100_000,
        }
    }
}

fn default_log_records() -> u64 {
    10_000
}

impl Limits {
    /// `self` with the bounds that are given replaced, in the units callers
    /// and policies use (fuel units, MiB, ms, KiB).
    pub fn with_asked(
        self,
        fuel: Option<u64>,
        memory_mb: Option<u64>,
        timeout_ms: Option<u64>,
        output_kb: Option<u64>,
    ) -> Limits {
        Limits {
            fuel: fuel.unwrap_or(self.fuel),
            memory_bytes: memory_mb.map_or(self.memory_bytes, |m| m.saturating_mul(1 << 20)),
            timeout: timeout_ms.map_or(self.timeout, Duration::from_millis),
            output_bytes: output_kb.map_or(self.output_bytes, |k| k.saturating_mul(1 << 10)),
            ..self
        }
    }

    /// The tighter of `self` and `ceiling` on every bound.
    pub fn clamp_to(self, ceiling: &Limits) -> Limits {
        Limits {
            fuel: self.fuel.min(ceiling.fuel),
            memory_bytes: self.memory_bytes.min(ceiling.memory_bytes),
            timeout: self.timeout.min(ceiling.timeout),
            output_bytes: self.output_bytes.min(ceiling.output_bytes),
            log_bytes: self.log_bytes.min(ceiling.log_bytes),
            log_records: self.log_records.min(ceiling.log_records),
            max_instances: self.max_instances.min(ceiling.max_instances),
            max_tables: self.max_tables.min(ceiling.max_tables),
            max_table_elements: self.max_table_elements.min(ceiling.max_table_elements),
        }
    }
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// A linear memory grew past the task's memory limit. Raised as a trap so the
/// guest cannot carry on, and recognised when classifying the outcome.
#[derive(Debug, thiserror::Error)]
#[error("memory limit of {limit} bytes exceeded (asked for {requested})")]
pub struct MemoryLimitExceeded {
    pub limit: u64,
    pub requested: u64,
}

/// A table grew past the task's table-element limit.
#[derive(Debug, thiserror::Error)]
#[error("table limit of {limit} elements exceeded (asked for {requested})")]
pub struct TableLimitExceeded {
    pub limit: usize,
    pub requested: usize,
}

/// Enforces [`Limits`] on a store and measures peak linear memory.
pub struct TaskLimiter {
    memory_limit: u64,
    table_elements: usize,
    instances: usize,
    tables: usize,
    /// Bytes of all linear memories now, and the most they ever held.
    memory_now: u64,
    memory_peak: u64,
}

impl TaskLimiter {
    pub fn new(limits: &Limits) -> Self {
        Self {
            memory_limit: limits.memory_bytes,
            table_elements: limits.max_table_elements,
            instances: limits.max_instances,
            tables: limits.max_tables,
            memory_now: 0,
            memory_peak: 0,
        }
    }

    pub fn peak_memory(&self) -> u64 {
        self.memory_peak
    }
}

impl ResourceLimiter for TaskLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.memory_now - current as u64 + desired as u64;
        if total > self.memory_limit {
            return Err(wasmtime::Error::new(MemoryLimitExceeded {
                limit: self.memory_limit,
                requested: total,
            }));
        }
        self.memory_now = total;
        self.memory_peak = self.memory_peak.max(total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            return Err(wasmtime::Error::new(TableLimitExceeded {
                limit: self.table_elements,
                requested: desired,
            }));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        self.tables
    }

    fn memories(&self) -> usize {
        // Memories are bounded by bytes; a count above instances is never useful.
        self.instances
    }
}
