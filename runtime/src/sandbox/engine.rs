use super::bindings;
use super::limits::Limits;
use super::state::TaskState;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig,
};

/// How the process-wide engine is built.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Tasks that may run at once; sizes the pooling allocator. Further tasks wait.
    pub concurrent_tasks: u32,
    /// Limits a task gets when it asks for nothing.
    pub default_limits: Limits,
    /// Limits no task may exceed, whatever it asks for.
    pub max_limits: Limits,
    /// How often the epoch ticker advances; the granularity of deadlines.
    pub epoch_tick: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            concurrent_tasks: 32,
            default_limits: Limits::default(),
            max_limits: Limits {
                fuel: 50_000_000_000,
                memory_bytes: 1 << 30,
                timeout: Duration::from_secs(300),
                output_bytes: 16 << 20,
                log_bytes: 16 << 20,
                log_records: 100_000,
                max_instances: 64,
                max_tables: 64,
                max_table_elements: 1_000_000,
            },
            epoch_tick: Duration::from_millis(5),
        }
    }
}

/// One wasmtime engine for the process, with every host interface linked once
/// and one epoch ticker thread.
pub struct SandboxEngine {
    engine: Engine,
    linker: Linker<TaskState>,
    config: EngineConfig,
    pooling: bool,
    /// One permit per pooled instance slot: tasks beyond it wait instead of failing.
    slots: tokio::sync::Semaphore,
    ticker: Option<Ticker>,
}

impl SandboxEngine {
    pub fn new(config: EngineConfig) -> anyhow::Result<Self> {
        anyhow::ensure!(
            config.concurrent_tasks > 0,
            "concurrent_tasks must be at least 1"
        );
        let (engine, pooling) = build_engine(&config)?;
        let linker = build_linker(&engine)?;
        let ticker = Ticker::start(engine.clone(), config.epoch_tick);
        let slots = tokio::sync::Semaphore::new(config.concurrent_tasks as usize);
        Ok(Self {
            engine,
            linker,
            config,
            pooling,
            slots,
            ticker: Some(ticker),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub(crate) fn linker(&self) -> &Linker<TaskState> {
        &self.linker
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub(crate) fn slots(&self) -> &tokio::sync::Semaphore {
        &self.slots
    }

    /// Whether instances come from the pooling allocator (false: on-demand fallback).
    pub fn is_pooling(&self) -> bool {
        self.pooling
    }
}

impl Drop for SandboxEngine {
    fn drop(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.stop();
        }
    }
}

fn base_config() -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .consume_fuel(true)
        .epoch_interruption(true)
        .cranelift_opt_level(OptLevel::Speed);
    config
}

const KEEP_RESIDENT_MEMORY: usize = 4 << 20;
const KEEP_RESIDENT_TABLES: usize = 64 << 10;
const KEEP_RESIDENT_STACK: usize = 128 << 10;

/// The pooling allocator, sized for a small machine: slots for
/// `concurrent_tasks` instances of typical components. Falls back to
/// on-demand allocation when the address space cannot be reserved.
fn build_engine(config: &EngineConfig) -> anyhow::Result<(Engine, bool)> {
    let tasks = config.concurrent_tasks;
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(tasks)
        .total_core_instances(tasks * 8)
        .total_memories(tasks * 2)
        .total_tables(tasks * 4)
        .total_stacks(tasks)
        .max_memory_size(config.max_limits.memory_bytes as usize)
        .table_elements(config.max_limits.max_table_elements)
        .max_unused_warm_slots(tasks.min(8))
        // Reset only the pages a task dirtied (PAGEMAP_SCAN where the kernel has
        // it) and keep them resident: the next task starts without page faults.
        .pagemap_scan(Enabled::Auto)
        .linear_memory_keep_resident(KEEP_RESIDENT_MEMORY)
        .table_keep_resident(KEEP_RESIDENT_TABLES)
        .async_stack_keep_resident(KEEP_RESIDENT_STACK);
    let mut pooled = base_config();
    pooled.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    match Engine::new(&pooled) {
        Ok(engine) => Ok((engine, true)),
        Err(err) => {
            tracing::warn!(error = %err, "cannot reserve the pooling allocator; falling back to on-demand allocation");
            let mut on_demand = base_config();
            // Where the pool could not be reserved, large per-memory
            // reservations would fail too: memories start small and move as they grow.
            on_demand
                .allocation_strategy(InstanceAllocationStrategy::OnDemand)
                .memory_reservation(0)
                .memory_guard_size(0)
                .memory_reservation_for_growth(1 << 20);
            let engine = Engine::new(&on_demand)
                .map_err(|e| anyhow::anyhow!("cannot create the wasm engine: {e}"))?;
            Ok((engine, false))
        }
    }
}

/// Links WASI p2, wasi:http and toolgate's host interface, once. What a task
/// may actually use is decided by its store state, never by the linker.
fn build_linker(engine: &Engine) -> anyhow::Result<Linker<TaskState>> {
    let mut linker = Linker::new(engine);
    let link =
        |r: wasmtime::Result<()>, what: &str| r.map_err(|e| anyhow::anyhow!("linking {what}: {e}"));
    link(wasmtime_wasi::p2::add_to_linker_async(&mut linker), "WASI")?;
    // wasi:filesystem again, over wasmtime-wasi's: the same, with disk quotas.
    link(
        super::quota_fs::add_to_linker(&mut linker),
        "wasi:filesystem with quotas",
    )?;
    link(
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker),
        "wasi:http",
    )?;
    link(
        bindings::Tool::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state),
        "toolgate:plugin/host",
    )?;
    // The agent world's interfaces (its `host` is the one above).
    {
        use super::agent::wit::toolgate::plugin as agent;
        link(
            agent::model_types::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state),
            "toolgate:plugin/model-types",
        )?;
        link(
            agent::model::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state),
            "toolgate:plugin/model",
        )?;
        link(
            agent::tools::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state),
            "toolgate:plugin/tools",
        )?;
        link(
            agent::agent_events::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state),
            "toolgate:plugin/agent-events",
        )?;
        link(
            agent::agent_types::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state),
            "toolgate:plugin/agent-types",
        )?;
    }
    Ok(linker)
}

/// Advances the engine's epoch every tick; running tasks check their deadline
/// (and yield to other tasks) on each one.
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Ticker {
    fn start(engine: Engine, tick: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("toolgate-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch ticker thread");
        Self { stop, thread }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}
