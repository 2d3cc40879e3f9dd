//! 10,000 SSE subscribers on one session, against the real server binary:
//! the server's memory per subscriber and the delay from publish to receipt.
//!
//! The server runs as its own process (the release `toolgate serve` on
//! loopback), so its memory is measured alone (VmRSS from /proc). Events are
//! published by running tasks; for each round the delay is measured from the
//! moment the task's HTTP response arrives (its events were published just
//! before) to each subscriber's receipt of its `task.completed`.
//!
//! Run: `cargo bench --bench sse -- [SUBSCRIBERS] [ROUNDS]` (defaults 10000 20).

#[path = "support/server.rs"]
mod server;

use futures_util::StreamExt;
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Barrier, mpsc};

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn start_server(data: &std::path::Path) -> (Child, String) {
    server::start(
        data,
        "rate_limit = 1000000\nrate_burst = 1000000\nmax_concurrent_requests = 20000\n",
        &[],
    )
}

fn percentile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * q).round() as usize]
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse::<usize>().ok());
    let subscribers = args.next().unwrap_or(10_000);
    let rounds = args.next().unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let (mut server, base) = start_server(dir.path());
    let key = std::fs::read_to_string(dir.path().join("data/admin.key"))
        .unwrap()
        .trim()
        .to_owned();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let session: serde_json::Value = client
        .post(format!("{base}/v1/sessions"))
        .bearer_auth(&key)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let session = session["id"].as_str().unwrap().to_owned();
    // Warm up: compile the plugin, settle the allocator.
    let task = |n: usize| serde_json::json!({"tool": "fs.write", "input": {"path": format!("f{n}.txt"), "content": "x"}});
    client
        .post(format!("{base}/v1/sessions/{session}/tasks"))
        .bearer_auth(&key)
        .json(&task(0))
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(server.id());

    let (received, mut receipts) = mpsc::unbounded_channel::<(usize, Instant)>();
    let connected = Arc::new(Barrier::new(subscribers + 1));
    for _ in 0..subscribers {
        let client = reqwest::Client::new();
        let url = format!("{base}/v1/sessions/{session}/events");
        let key = key.clone();
        let received = received.clone();
        let connected = connected.clone();
        tokio::spawn(async move {
            let response = client
                .get(url)
                .bearer_auth(key)
                .send()
                .await
                .expect("subscribe");
            connected.wait().await;
            let mut stream = response.bytes_stream();
            let mut buffer = String::new();
            let mut round = 0;
            while let Some(Ok(chunk)) = stream.next().await {
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find("\n\n") {
                    let block: String = buffer.drain(..end + 2).collect();
                    if block.contains("event: task.completed") {
                        round += 1;
                        let _ = received.send((round, Instant::now()));
                    }
                }
            }
        });
    }
    drop(received);
    let started = Instant::now();
    connected.wait().await;
    println!(
        "{subscribers} subscribers connected in {:.2?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(server.id());
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let gauge = metrics
        .lines()
        .find(|l| l.starts_with("toolgate_sse_subscribers"))
        .unwrap_or("?")
        .to_owned();
    println!(
        "server RSS {before} KiB -> {after} KiB: {:.1} KiB per subscriber ({gauge})",
        (after.saturating_sub(before)) as f64 / subscribers as f64
    );

    let mut delays = Vec::with_capacity(subscribers * rounds);
    for round in 1..=rounds {
        let response = client
            .post(format!("{base}/v1/sessions/{session}/tasks"))
            .bearer_auth(&key)
            .json(&task(round))
            .send()
            .await
            .unwrap();
        let published = Instant::now();
        assert!(response.status().is_success());
        let mut got = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        while got < subscribers && Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(10), receipts.recv()).await {
                Ok(Some((r, at))) if r == round => {
                    delays.push(at.saturating_duration_since(published));
                    got += 1;
                }
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        assert_eq!(
            got, subscribers,
            "round {round}: every subscriber gets the event"
        );
    }
    let p50 = percentile(&mut delays, 0.5);
    let p99 = percentile(&mut delays, 0.99);
    let max = percentile(&mut delays, 1.0);
    println!(
        "publish -> receipt over {rounds} rounds x {subscribers} subscribers: p50 {p50:.2?}, p99 {p99:.2?}, max {max:.2?}"
    );
    let _ = server.kill();
    let _ = server.wait();
}
