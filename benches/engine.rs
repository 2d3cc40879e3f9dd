//! The cost of one tool call.
//!
//! (a) floor: bare wasmtime, instantiate the trivial `echo` component from an
//!     `InstancePre` into a fresh store with an empty WASI context, call it;
//! (a') the same with the pool settings toolgate uses, to isolate the cost of
//!     toolgate's limits and accounting from the allocator tuning;
//! (b) toolgate: the same tool through `Executor::run`, with grants, fuel,
//!     memory limiter, epoch deadline, output caps and usage accounting.
//!
//! Run: `cargo bench --bench engine` (optionally `-- ITERATIONS`).

use std::sync::Arc;
use std::time::{Duration, Instant};
use toolgate::policy::AllowAll;
use toolgate::sandbox::{Catalog, EngineConfig, Executor, SandboxEngine, TaskRequest};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

mod floor {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "toolgate:plugin/tool",
        exports: { default: async },
    });
}

const INPUT: &str = r#"{"message":"hello"}"#;

struct FloorState {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for FloorState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn echo_bytes() -> Vec<u8> {
    let path = std::path::Path::new(env!("TOOLGATE_PLUGIN_ARTIFACTS")).join("echo.wasm");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn summarize(name: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let pick = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    println!(
        "{name:<34} n={:<7} median={:>8.2?} p99={:>8.2?} mean={:>8.2?} min={:>8.2?}",
        samples.len(),
        pick(0.5),
        pick(0.99),
        mean,
        samples[0]
    );
    pick(0.5)
}

/// `tuned`: the same pool settings toolgate uses (dirty pages kept resident),
/// so the difference to (b) is only toolgate's limits and accounting.
async fn bench_floor(iterations: usize, tuned: bool) -> Duration {
    let mut pool = PoolingAllocationConfig::default();
    if tuned {
        pool.pagemap_scan(Enabled::Auto)
            .linear_memory_keep_resident(4 << 20)
            .table_keep_resident(64 << 10)
            .async_stack_keep_resident(128 << 10);
    }
    let mut config = Config::new();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    let engine = Engine::new(&config).unwrap();
    let component = Component::new(&engine, echo_bytes()).unwrap();
    let mut linker: Linker<FloorState> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
    linker.define_unknown_imports_as_traps(&component).unwrap();
    let pre = floor::ToolPre::new(linker.instantiate_pre(&component).unwrap()).unwrap();

    let mut samples = Vec::with_capacity(iterations);
    for i in 0..iterations + iterations / 10 {
        let started = Instant::now();
        let mut store = Store::new(
            &engine,
            FloorState {
                wasi: WasiCtx::builder().build(),
                table: ResourceTable::new(),
            },
        );
        let tool = pre.instantiate_async(&mut store).await.unwrap();
        let out = tool.call_call(&mut store, "echo", INPUT).await.unwrap();
        assert!(out.is_ok());
        if i >= iterations / 10 {
            samples.push(started.elapsed());
        }
    }
    let name = if tuned {
        "(a') bare wasmtime, tuned pool"
    } else {
        "(a) bare wasmtime instantiate+call"
    };
    summarize(name, samples)
}

async fn bench_toolgate(iterations: usize) -> Duration {
    let engine = Arc::new(SandboxEngine::new(EngineConfig::default()).unwrap());
    let catalog = Catalog::new(engine.clone(), None);
    let plugin = catalog.load_bytes("echo", &echo_bytes()).await.unwrap();
    let executor = Executor::new(engine, Arc::new(AllowAll));

    let mut samples = Vec::with_capacity(iterations);
    for i in 0..iterations + iterations / 10 {
        let started = Instant::now();
        let outcome = executor.run(&plugin, TaskRequest::new("echo", INPUT)).await;
        assert!(outcome.result.is_ok(), "{:?}", outcome.result);
        if i >= iterations / 10 {
            samples.push(started.elapsed());
        }
    }
    summarize("(b) toolgate engine, limits+usage", samples)
}

fn main() {
    let iterations: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let floor = bench_floor(iterations, false).await;
        let tuned = bench_floor(iterations, true).await;
        let toolgate = bench_toolgate(iterations).await;
        let ratio = |other: Duration| toolgate.as_secs_f64() / other.as_secs_f64();
        println!("ratio (b)/(a) at the median: {:.2}", ratio(floor));
        println!("ratio (b)/(a') at the median: {:.2}", ratio(tuned));
    });
}
