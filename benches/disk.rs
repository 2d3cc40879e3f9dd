//! What the disk quota costs a write-heavy tool.
//!
//! The `hostile.fill` tool writes into a granted directory, through the
//! executor, once with the directory under a disk quota (every write, new
//! entry and size change asked of the quota first) and once without; runs
//! alternate so both see the same machine. Each run starts from an empty
//! directory and a fresh quota.
//!
//! Run: `cargo bench --bench disk` (optionally `-- ITERATIONS`).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use toolgate::policy::AllowAll;
use toolgate::sandbox::{
    Catalog, DirGrant, DiskQuota, EngineConfig, Executor, Grants, Plugin, SandboxEngine,
    TaskRequest,
};

const WORKLOADS: &[(&str, &str)] = &[
    (
        "8 MiB in 64 KiB std writes",
        r#"{"how":"std","bytes":8388608}"#,
    ),
    (
        "8 MiB in 4 KiB stream writes",
        r#"{"how":"stream","bytes":8388608}"#,
    ),
    (
        "8 MiB in 64 KiB descriptor writes",
        r#"{"how":"write","bytes":8388608}"#,
    ),
    (
        "500 files of 1 KiB",
        r#"{"how":"files","bytes":1024,"count":500}"#,
    ),
];

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

async fn run_once(
    executor: &Executor,
    plugin: &Plugin,
    dir: &Path,
    input: &str,
    quota: bool,
) -> Duration {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let grants = Grants {
        dirs: vec![DirGrant {
            host: dir.to_owned(),
            guest: "/workspace".into(),
            writable: true,
            quota: quota.then(|| DiskQuota::new(1 << 30)),
        }],
        ..Grants::default()
    };
    let request = TaskRequest {
        grants,
        ..TaskRequest::new("fill", input)
    };
    let started = Instant::now();
    let outcome = executor.run(plugin, request).await;
    let elapsed = started.elapsed();
    let output: serde_json::Value =
        serde_json::from_str(outcome.result.as_ref().expect("fill runs")).unwrap();
    assert!(output["error"].is_null(), "{output}");
    elapsed
}

fn main() {
    let iterations: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(40);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let engine = Arc::new(SandboxEngine::new(EngineConfig::default()).unwrap());
        let catalog = Catalog::new(engine.clone(), None);
        let path = Path::new(env!("TOOLGATE_PLUGIN_ARTIFACTS")).join("hostile.wasm");
        let plugin = catalog
            .load_bytes("hostile", &std::fs::read(&path).unwrap())
            .await
            .unwrap();
        let executor = Executor::new(engine, Arc::new(AllowAll));
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().join("workspace");
        for (name, input) in WORKLOADS {
            let (mut with, mut without) = (Vec::new(), Vec::new());
            for i in 0..iterations + 2 {
                let a = run_once(&executor, &plugin, &dir, input, true).await;
                let b = run_once(&executor, &plugin, &dir, input, false).await;
                if i >= 2 {
                    with.push(a);
                    without.push(b);
                }
            }
            let (with, without) = (median(with), median(without));
            println!(
                "{name:<36} quota {with:>9.2?}  no quota {without:>9.2?}  ratio {:.3}",
                with.as_secs_f64() / without.as_secs_f64()
            );
        }
    });
}
