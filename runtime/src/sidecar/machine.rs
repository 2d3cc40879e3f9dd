//! This machine measured: cores, memory, the disk a directory is on, load. A sidecar
//! answers it in its health checks, and the `local` host driver reports it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// A machine's capacity and current figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// Thousandths of a core.
    pub cpu_millis: u64,
    pub memory_mb: u64,
    pub disk_mb: u64,
    /// `load_1m`, `memory_used_mb`, `disk_free_mb`.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
}

/// Measures this machine; `dir` names the filesystem whose disk counts (where workspaces
/// are kept). Memory is the cgroup's limit when it is lower than the machine's.
pub fn measure(dir: &Path) -> Machine {
    use sysinfo::{Disks, MemoryRefreshKind, System};
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let mut system = System::new();
    system.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
    let mut total = system.total_memory();
    let mut available = system.available_memory();
    if let Some(limits) = system.cgroup_limits()
        && limits.total_memory > 0
        && limits.total_memory < total
    {
        total = limits.total_memory;
        available = limits.free_memory.min(total);
    }
    let (disk_total, disk_free) = disk_of(&Disks::new_with_refreshed_list(), dir);
    let mb = |bytes: u64| bytes / (1024 * 1024);
    let mut metrics = BTreeMap::new();
    metrics.insert("load_1m".into(), System::load_average().one);
    metrics.insert(
        "memory_used_mb".into(),
        mb(total.saturating_sub(available)) as f64,
    );
    metrics.insert("disk_free_mb".into(), mb(disk_free) as f64);
    Machine {
        cpu_millis: cores * 1000,
        memory_mb: mb(total),
        disk_mb: mb(disk_total),
        metrics,
    }
}

/// What an operator declares of a machine, over what is measured: a sidecar may be given
/// only part of its host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Declared {
    pub cpu_millis: Option<u64>,
    pub memory_mb: Option<u64>,
    pub disk_mb: Option<u64>,
}

/// This machine, measured at most once per [`MEASURE_EVERY`] (health checks come often).
pub struct MachineProbe {
    dir: std::path::PathBuf,
    declared: Declared,
    last: std::sync::Mutex<Option<(std::time::Instant, Machine)>>,
}

pub const MEASURE_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

impl MachineProbe {
    pub fn new(dir: std::path::PathBuf, declared: Declared) -> Self {
        Self {
            dir,
            declared,
            last: std::sync::Mutex::default(),
        }
    }

    pub fn current(&self) -> Machine {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, machine)) = &*last
            && at.elapsed() < MEASURE_EVERY
        {
            return machine.clone();
        }
        let mut machine = measure(&self.dir);
        let declared = self.declared;
        machine.cpu_millis = declared.cpu_millis.unwrap_or(machine.cpu_millis);
        machine.memory_mb = declared.memory_mb.unwrap_or(machine.memory_mb);
        machine.disk_mb = declared.disk_mb.unwrap_or(machine.disk_mb);
        *last = Some((std::time::Instant::now(), machine.clone()));
        machine
    }
}

/// Total and free bytes of the filesystem `dir` is on: the disk mounted at the longest
/// prefix of its path.
fn disk_of(disks: &sysinfo::Disks, dir: &Path) -> (u64, u64) {
    let mut probe = dir.to_path_buf();
    // The directory may not exist yet: its nearest existing ancestor is on the same disk.
    while !probe.exists() && probe.pop() {}
    let path = std::fs::canonicalize(&probe).unwrap_or(probe);
    disks
        .list()
        .iter()
        .filter(|d| path.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().as_os_str().len())
        .map_or((0, 0), |d| (d.total_space(), d.available_space()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn declared_figures_win_over_measured_ones() {
        let dir = tempfile::tempdir().unwrap();
        let probe = super::MachineProbe::new(
            dir.path().into(),
            super::Declared {
                cpu_millis: Some(1500),
                memory_mb: None,
                disk_mb: Some(10),
            },
        );
        let machine = probe.current();
        assert_eq!((machine.cpu_millis, machine.disk_mb), (1500, 10));
        assert!(machine.memory_mb > 0);
    }

    #[test]
    fn this_machine_has_cores_memory_and_the_disk_of_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let machine = super::measure(&dir.path().join("not/yet"));
        assert!(machine.cpu_millis >= 1000);
        assert!(machine.memory_mb > 0);
        assert!(machine.disk_mb > 0, "{machine:?}");
        assert!(machine.metrics["disk_free_mb"] <= machine.disk_mb as f64);
    }
}
