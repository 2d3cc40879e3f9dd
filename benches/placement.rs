//! Placement decisions per second: 1,000 hosts of mixed sizes and regions with 10,000 open
//! sessions reserved on them, one thread.
//!
//! 1. `would_place`: filter and score every host, reserve nothing (the preflight's check);
//! 2. `try_place` + `release_session`: a whole decision that reserves the session's
//!    resources on the chosen host and gives them back (the registry stays at 10,000);
//! 3. the same with hints (a preferred region and three hosts to avoid);
//! 4. the same with bin-pack scoring.
//!
//! Run: `cargo bench --bench placement` (optionally `-- DECISIONS`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use toolgate::events::{EventHub, HubConfig, MemoryPersistence};
use toolgate::hosts::{
    Connector, Demand, DriverSlot, HostReport, Overcommit, PlacementHints, Registry,
    RegistryConfig, Resources, StaticDriver,
};
use toolgate::sidecar::{
    RunTask, SessionSpec, Sidecar, SidecarError, SidecarFuture, SidecarState, TaskFinished,
};
use toolgate::vocabulary::{HostState, PlacementStrategy};

const HOSTS: usize = 1000;
const SESSIONS: usize = 10_000;

/// A sidecar that is always ready and never asked anything.
struct Idle(String);

impl Sidecar for Idle {
    fn id(&self) -> &str {
        &self.0
    }
    fn open_session(&self, _: SessionSpec) -> SidecarFuture<Result<(), SidecarError>> {
        Box::pin(async { Ok(()) })
    }
    fn run_task(&self, _: RunTask) -> SidecarFuture<Result<TaskFinished, SidecarError>> {
        Box::pin(async { Err(SidecarError::Internal("benchmark".into())) })
    }
    fn close_session(&self, _: &str) -> SidecarFuture<Result<(), SidecarError>> {
        Box::pin(async { Ok(()) })
    }
    fn state(&self) -> SidecarState {
        SidecarState::Ready
    }
}

struct Connect;

impl Connector for Connect {
    fn connect(&self, _: &str, report: &HostReport) -> Result<Arc<dyn Sidecar>, String> {
        Ok(Arc::new(Idle(report.id.clone())))
    }
}

fn hosts() -> Vec<HostReport> {
    let regions = ["eu-west", "eu-central", "us-east", "us-west", "ap-south"];
    (0..HOSTS)
        .map(|i| HostReport {
            id: format!("host-{i:04}"),
            endpoint: format!("https://10.0.{}.{}:8081", i / 250, i % 250),
            state: if i % 50 == 0 {
                HostState::Standby
            } else {
                HostState::Ready
            },
            labels: BTreeMap::from([("region".into(), regions[i % regions.len()].into())]),
            capacity: Some(Resources {
                cpu_millis: [8_000, 16_000, 32_000][i % 3],
                memory_mb: [16_384, 32_768, 65_536][i % 3],
                disk_mb: 200_000,
            }),
            max_session_timeout_ms: (i % 7 == 0).then_some(3_600_000),
            metrics: BTreeMap::new(),
        })
        .collect()
}

fn registry(strategy: PlacementStrategy, runtime: &tokio::runtime::Runtime) -> Arc<Registry> {
    let hub = Arc::new(EventHub::new(
        Arc::new(MemoryPersistence::bounded(16)),
        HubConfig::default(),
    ));
    let registry = Registry::new(
        RegistryConfig {
            strategy,
            overcommit: Overcommit::default(),
            wait: Duration::ZERO,
            ..RegistryConfig::default()
        },
        vec![DriverSlot {
            driver: Arc::new(StaticDriver { hosts: hosts() }),
            list_every: Duration::from_secs(3600),
            scaling: None,
        }],
        Arc::new(Connect),
        hub,
    );
    runtime.block_on(registry.refresh(true));
    let small = demand(250, 256, None);
    for i in 0..SESSIONS {
        registry
            .try_place(&format!("open-{i}"), &small)
            .expect("10,000 small sessions fit");
    }
    registry
}

fn demand(cpu: u64, memory: u64, hints: Option<PlacementHints>) -> Demand {
    Demand {
        resources: Resources {
            cpu_millis: cpu,
            memory_mb: memory,
            disk_mb: 512,
        },
        timeout_ms: 600_000,
        hints: hints.unwrap_or_default(),
        passive: false,
    }
}

fn rate(name: &str, decisions: usize, run: impl FnMut(usize)) {
    let mut run = run;
    for i in 0..decisions / 10 {
        run(i);
    }
    let started = Instant::now();
    for i in 0..decisions {
        run(i);
    }
    let elapsed = started.elapsed();
    println!(
        "{name:<48} {:>9.0} decisions/s  ({:>6.2} µs each)",
        decisions as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / decisions as f64
    );
}

fn main() {
    let decisions: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    println!("{HOSTS} hosts, {SESSIONS} open sessions, {decisions} decisions per case, one thread");
    let spread = registry(PlacementStrategy::Spread, &runtime);
    let want = demand(1000, 1024, None);
    rate("would_place (no reservation)", decisions, |_| {
        spread.would_place(&want).expect("fits");
    });
    rate("try_place + release_session, spread", decisions, |_| {
        spread.try_place("bench", &want).expect("fits");
        spread.release_session("bench");
    });
    let hinted = demand(
        1000,
        1024,
        Some(PlacementHints {
            region: Some("us-east".into()),
            hosts: Vec::new(),
            avoid: vec!["host-0002".into(), "host-0007".into(), "host-0012".into()],
        }),
    );
    rate(
        "try_place + release_session, region + avoid",
        decisions,
        |_| {
            spread.try_place("bench", &hinted).expect("fits");
            spread.release_session("bench");
        },
    );
    let packed = registry(PlacementStrategy::BinPack, &runtime);
    rate("try_place + release_session, bin-pack", decisions, |_| {
        packed.try_place("bench", &want).expect("fits");
        packed.release_session("bench");
    });
}
