//! What toolgate adds to an agent run: per model call and per tool call, against the fake
//! provider's own latency.
//!
//! The release `toolgate serve` runs as its own process on loopback, with one model provider:
//! a fake OpenAI chat-completions endpoint in this process that answers after `DELAY_MS` (the
//! provider's own latency). It asks for `fs.list` until the conversation holds as many tool
//! results as the prompt says (`steps:N`), then answers. Measured, each over `ROUNDS` runs of
//! the shipped `tool-loop` agent:
//!
//! - the provider alone: a direct POST to the fake from here (HTTP on loopback plus the delay);
//! - a tool task alone: `POST /v1/sessions/{id}/tasks` (`fs.list`, waiting);
//! - a run of 0 steps (1 model call) and of `STEPS` steps (`STEPS` + 1 model calls, `STEPS`
//!   tool calls).
//!
//! Added to a run with one model call = run(0) - provider alone (the run's own start and end
//! included: its record, its events, the agent's instance). Added per step (one model call and
//! one tool call) = (run(STEPS) - run(0)) / STEPS - provider alone, to compare with a tool
//! task alone over the API.
//!
//! Run: `cargo bench --bench runs -- [ROUNDS] [STEPS] [DELAY_MS]` (defaults 50 8 0).

#[path = "support/server.rs"]
mod server;

use axum::extract::State;
use serde_json::{Value, json};
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

const KEY: &str = "sk-bench-0000";

/// The fake provider: tool calls until the conversation has `steps:N` tool results.
async fn complete(State(delay): State<Arc<Duration>>, body: String) -> axum::Json<Value> {
    let request: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    let wanted: usize = messages
        .iter()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .and_then(|c| c.strip_prefix("steps:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    let done = messages.iter().filter(|m| m["role"] == "tool").count();
    if !delay.is_zero() {
        tokio::time::sleep(*delay).await;
    }
    let usage = json!({"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60});
    axum::Json(if done < wanted {
        json!({"id": "c", "object": "chat.completion", "model": "bench",
               "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                   "role": "assistant", "content": null, "tool_calls": [{
                       "id": format!("call_{done}"), "type": "function",
                       "function": {"name": "fs_list", "arguments": "{\"path\": \".\"}"}}]}}],
               "usage": usage})
    } else {
        json!({"id": "c", "object": "chat.completion", "model": "bench",
               "choices": [{"index": 0, "finish_reason": "stop",
                            "message": {"role": "assistant", "content": "done"}}],
               "usage": usage})
    })
}

async fn start_fake(delay: Duration) -> String {
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(complete))
        .with_state(Arc::new(delay));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/v1")
}

fn start_server(dir: &std::path::Path, provider: &str) -> (Child, String) {
    let config = format!(
        "rate_limit = 1000000\nrate_burst = 1000000\n\n[[model_providers]]\nname = \"local\"\n\
         kind = \"openai\"\nbase_url = \"{provider}\"\nmodels = [\"bench\"]\n\
         api_key_secret = \"bench_key\"\nmax_retries = 0\n"
    );
    server::start(dir, &config, &[("TOOLGATE_SECRET_BENCH_KEY", KEY)])
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn timed<F: std::future::Future<Output = ()>>(
    rounds: usize,
    mut f: impl FnMut() -> F,
) -> Duration {
    // One warm-up call compiles what is compiled lazily (the agent) and opens connections.
    f().await;
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        f().await;
        samples.push(started.elapsed());
    }
    median(&mut samples)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse::<u64>().ok());
    let rounds = args.next().unwrap_or(50) as usize;
    let steps = args.next().unwrap_or(8);
    let delay = Duration::from_millis(args.next().unwrap_or(0));
    let provider = start_fake(delay).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut server, base) = start_server(dir.path(), &provider);
    let key = std::fs::read_to_string(dir.path().join("data/admin.key"))
        .unwrap()
        .trim()
        .to_owned();
    let client = reqwest::Client::new();
    let session: Value = client
        .post(format!("{base}/v1/sessions"))
        .bearer_auth(&key)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let session = session["id"].as_str().unwrap().to_owned();

    let provider_alone = timed(rounds, || async {
        let answer = client
            .post(format!("{provider}/chat/completions"))
            .json(&json!({"model": "bench", "messages": [{"role": "user", "content": "steps:0"}]}))
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success());
        answer.bytes().await.unwrap();
    })
    .await;
    let task_alone = timed(rounds, || async {
        let task: Value = client
            .post(format!("{base}/v1/sessions/{session}/tasks"))
            .bearer_auth(&key)
            .json(&json!({"tool": "fs.list", "input": {"path": "."}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(task["state"], "completed", "{task}");
    })
    .await;
    let run = |steps: u64| {
        let (client, base, key, session) = (&client, &base, &key, &session);
        move || async move {
            let run: Value = client
                .post(format!("{base}/v1/sessions/{session}/runs"))
                .bearer_auth(key)
                .json(&json!({"agent": "tool-loop",
                              "input": {"prompt": format!("steps:{steps}"), "max_steps": 64}}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(run["state"], "completed", "{run}");
            assert_eq!(run["usage"]["tool_calls"], steps, "{run}");
        }
    };
    let run_0 = timed(rounds, run(0)).await;
    let run_n = timed(rounds, run(steps)).await;
    let _ = server.kill();
    let _ = server.wait();

    let per_run = run_0.saturating_sub(provider_alone);
    let per_step = (run_n.saturating_sub(run_0)) / steps.max(1) as u32;
    let added_per_step = per_step.saturating_sub(provider_alone);
    println!(
        "rounds {rounds}, steps {steps}, provider delay {} ms (medians)",
        delay.as_millis()
    );
    println!(
        "provider alone (direct POST)      {:8.3} ms",
        ms(provider_alone)
    );
    println!(
        "tool task alone (POST .../tasks)  {:8.3} ms",
        ms(task_alone)
    );
    println!("run, 0 steps (1 model call)       {:8.3} ms", ms(run_0));
    println!(
        "run, {steps} steps                     {:8.3} ms",
        ms(run_n)
    );
    println!("added to a run of 1 model call    {:8.3} ms", ms(per_run));
    println!("one step (model call + tool call) {:8.3} ms", ms(per_step));
    println!(
        "added per step over the provider  {:8.3} ms",
        ms(added_per_step)
    );
}
