//! Hosts across processes on loopback: an orchestrator, two `toolgate sidecar`s of different
//! sizes, a standby one, and a test HTTP server standing in for the autoscaler behind the
//! bundled `webhook` driver. Sessions land by capacity; a session larger than any ready host
//! promotes the standby one; when everything is full the webhook is asked for a host, starts a
//! new sidecar, and the waiting session lands on it; a killed host turns `unhealthy` and takes
//! no new sessions.

use crate::processes::{Process, TOKEN, call, get, orchestrator_with, sidecar, stop, write};
use axum::Json;
use axum::extract::State;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The autoscaler: answers the webhook driver, and brings up a sidecar per provision call.
#[derive(Default)]
struct Autoscaler {
    dir: PathBuf,
    /// Every request body it was sent.
    calls: Mutex<Vec<Value>>,
    /// The hosts it runs: (id, endpoint, process).
    hosts: Mutex<Vec<(String, String, Process)>>,
}

async fn webhook(
    State(autoscaler): State<Arc<Autoscaler>>,
    Json(body): Json<Value>,
) -> Json<Value> {
    autoscaler.calls.lock().unwrap().push(body.clone());
    let listed = |a: &Autoscaler| -> Vec<Value> {
        a.hosts
            .lock()
            .unwrap()
            .iter()
            .map(|(id, endpoint, _)| json!({ "id": id, "endpoint": endpoint }))
            .collect()
    };
    match body["action"].as_str() {
        Some("provision") => {
            let n = autoscaler.hosts.lock().unwrap().len() + 1;
            let dir = autoscaler.dir.join(format!("auto-{n}"));
            std::fs::create_dir_all(&dir).unwrap();
            // Starting a process waits for its banner: off the async workers.
            let (process, address) = tokio::task::spawn_blocking(move || {
                sidecar(
                    &dir,
                    &[
                        "--cpu-millis",
                        "3000",
                        "--memory-mb",
                        "4096",
                        "--disk-mb",
                        "16384",
                    ],
                )
            })
            .await
            .unwrap();
            let id = format!("auto-{n}");
            let endpoint = address;
            autoscaler
                .hosts
                .lock()
                .unwrap()
                .push((id.clone(), endpoint.clone(), process));
            Json(
                json!({ "hosts": [{ "id": id, "endpoint": endpoint, "state": "provisioning",
                "labels": { "region": "test" } }] }),
            )
        }
        Some("release") => {
            let host = body["host"].as_str().unwrap_or_default().to_owned();
            autoscaler
                .hosts
                .lock()
                .unwrap()
                .retain(|(id, ..)| *id != host);
            Json(json!({}))
        }
        _ => Json(json!({ "hosts": listed(&autoscaler) })),
    }
}

fn host_of(hosts: &Value, id: &str) -> Value {
    hosts["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["id"] == id)
        .cloned()
        .unwrap_or(Value::Null)
}

async fn wait_for_state(client: &reqwest::Client, base: &str, admin: &str, id: &str, state: &str) {
    let started = Instant::now();
    loop {
        let host = get(client, admin, format!("{base}/v1/hosts/{id}")).await;
        if host["state"] == state {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "host {id} never became {state}: {host}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn session(cpu: u64, memory: u64) -> Value {
    json!({ "resources": { "cpu_millis": cpu, "memory_mb": memory, "disk_mb": 100, "timeout_ms": 60000 } })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_land_by_capacity_promote_standby_provision_through_the_webhook_and_avoid_dead_hosts()
 {
    let dir = tempfile::tempdir().unwrap();
    let make = |name: &str| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    };
    let (_small, small) = sidecar(
        &make("small"),
        &[
            "--cpu-millis",
            "500",
            "--memory-mb",
            "512",
            "--disk-mb",
            "4096",
        ],
    );
    let (mut large_process, large) = sidecar(
        &make("large"),
        &[
            "--cpu-millis",
            "2000",
            "--memory-mb",
            "1024",
            "--disk-mb",
            "8192",
        ],
    );
    let (_reserve, reserve) = sidecar(
        &make("reserve"),
        &[
            "--cpu-millis",
            "3000",
            "--memory-mb",
            "4096",
            "--disk-mb",
            "16384",
        ],
    );

    let autoscaler = Arc::new(Autoscaler {
        dir: make("autoscaler"),
        ..Default::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(webhook))
        .with_state(autoscaler.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let token = dir.path().join("sidecars.token");
    write(&token, TOKEN);
    let token = token.display().to_string();
    let config = format!(
        r#"placement_wait_ms = 30000
overcommit = {{ cpu = 1.0, memory = 1.0, disk = 1.0 }}

[[sidecars]]
id = "small"
url = "{small}"
token_file = "{token}"
labels = {{ region = "eu" }}

[[sidecars]]
id = "large"
url = "{large}"
token_file = "{token}"

[[sidecars]]
id = "reserve"
url = "{reserve}"
token_file = "{token}"
standby = true

[[drivers]]
name = "autoscaler"
component = "webhook"
config = {{ url = "{hook}", timeout_ms = 5000 }}
allow_private_network = true
sidecar_token_file = "{token}"
max_hosts = 1
cooldown_s = 3600
list_interval_ms = 300
"#
    );
    // The autoscaler's address is one the driver's requests may reach.
    let reachable = |policies: &std::path::Path| {
        let path = policies.join("entities.json");
        let mut entities: Vec<Value> =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        entities.push(
            json!({ "uid": { "type": "Domain", "id": "127.0.0.1" }, "attrs": {},
            "parents": [{ "type": "DomainList", "id": "host-drivers" }] }),
        );
        std::fs::write(&path, serde_json::to_string(&entities).unwrap()).unwrap();
    };
    let (mut orchestrator, base, admin) = orchestrator_with(dir.path(), &config, reachable);
    let client = reqwest::Client::new();
    for id in ["small", "large"] {
        wait_for_state(&client, &base, &admin, id, "ready").await;
    }
    wait_for_state(&client, &base, &admin, "reserve", "standby").await;

    // Every host with what it has; the driver is listed.
    let hosts = get(&client, &admin, format!("{base}/v1/hosts")).await;
    assert_eq!(
        host_of(&hosts, "small")["capacity"]["cpu_millis"],
        500,
        "{hosts}"
    );
    assert_eq!(
        host_of(&hosts, "large")["capacity"]["memory_mb"],
        1024,
        "{hosts}"
    );
    assert!(
        hosts["drivers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["name"] == "autoscaler" && d["can_provision"] == true),
        "{hosts}"
    );

    // By capacity: 1500 cpu fits only `large`; a small one goes to the least allocated host.
    // (The shipped policies let a session ask for 2000 cpu_millis and 1024 MiB at most.)
    let sessions = format!("{base}/v1/sessions");
    let (status, first) = call(&client, &admin, sessions.clone(), session(1500, 512)).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["host"], "large");
    let (_, second) = call(&client, &admin, sessions.clone(), session(100, 64)).await;
    assert_eq!(
        second["host"], "small",
        "spread: small is the least allocated now"
    );
    // A region hint wins; a hosts hint restricts.
    let hinted = json!({ "resources": { "cpu_millis": 100, "memory_mb": 64, "disk_mb": 10, "timeout_ms": 1000 },
        "placement": { "hosts": ["large"] } });
    let (_, third) = call(&client, &admin, sessions.clone(), hinted).await;
    assert_eq!(third["host"], "large", "{third}");
    let hosts = get(&client, &admin, format!("{base}/v1/hosts")).await;
    assert_eq!(
        host_of(&hosts, "large")["allocated"]["cpu_millis"],
        1600,
        "{hosts}"
    );
    assert_eq!(host_of(&hosts, "large")["sessions"], 2, "{hosts}");

    // Larger than any ready host: the standby one is promoted and takes it.
    let (status, big) = call(&client, &admin, sessions.clone(), session(2000, 1024)).await;
    assert_eq!(status, StatusCode::CREATED, "{big}");
    assert_eq!(big["host"], "reserve");
    wait_for_state(&client, &base, &admin, "reserve", "ready").await;

    // Larger than anything left: the webhook is asked, starts a sidecar, and the waiting
    // session lands on it.
    let (status, scaled) = call(&client, &admin, sessions.clone(), session(2000, 1024)).await;
    assert_eq!(status, StatusCode::CREATED, "{scaled}");
    assert_eq!(scaled["host"], "auto-1", "{scaled}");
    let provisions: Vec<Value> = autoscaler
        .calls
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c["action"] == "provision")
        .cloned()
        .collect();
    assert_eq!(provisions.len(), 1, "{provisions:?}");
    assert_eq!(provisions[0]["resources"]["cpu_millis"], 2000);
    // A task runs there like anywhere.
    let (status, task) = call(
        &client,
        &admin,
        format!(
            "{base}/v1/sessions/{}/tasks",
            scaled["id"].as_str().unwrap()
        ),
        json!({ "tool": "fs.write", "input": { "path": "a.txt", "content": "on auto-1" } }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{task}");
    assert_eq!(task["state"], "completed", "{task}");

    // At its maximum of hosts, the driver is not asked again: 503 `capacity` with Retry-After.
    let response = client
        .post(&sessions)
        .bearer_auth(&admin)
        .json(&session(2000, 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "capacity", "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("maximum"),
        "{body}"
    );

    // A host that is killed turns unhealthy, its sessions end, and it takes no new ones.
    large_process.0.kill().unwrap();
    large_process.0.wait().unwrap();
    wait_for_state(&client, &base, &admin, "large", "unhealthy").await;
    let started = Instant::now();
    loop {
        let lost = get(
            &client,
            &admin,
            format!("{base}/v1/sessions/{}", first["id"].as_str().unwrap()),
        )
        .await;
        if lost["close_reason"] == "host_lost" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{lost}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pinned = json!({ "resources": { "cpu_millis": 100, "memory_mb": 64, "disk_mb": 10, "timeout_ms": 1000 },
        "placement": { "hosts": ["large"] } });
    let (status, refused) = call(&client, &admin, sessions.clone(), pinned).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{refused}");
    for _ in 0..5 {
        let (status, placed) = call(&client, &admin, sessions.clone(), session(100, 64)).await;
        assert_eq!(status, StatusCode::CREATED, "{placed}");
        assert_ne!(placed["host"], "large");
    }

    // Each change is on the admins' host stream.
    let stream = client
        .get(format!("{base}/v1/hosts/events?after=0"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let mut seen = String::new();
    let mut stream = stream;
    let started = Instant::now();
    while !(seen.contains("\"to\":\"unhealthy\"") && seen.contains("\"from\":\"standby\""))
        && started.elapsed() < Duration::from_secs(10)
    {
        match tokio::time::timeout(Duration::from_secs(2), stream.chunk()).await {
            Ok(Ok(Some(chunk))) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            _ => break,
        }
    }
    assert!(seen.contains("event: host.changed"), "{seen}");
    assert!(
        seen.contains("\"host\":\"large\"") && seen.contains("\"to\":\"unhealthy\""),
        "{seen}"
    );
    assert!(
        seen.contains("\"host\":\"reserve\"") && seen.contains("\"from\":\"standby\""),
        "{seen}"
    );
    // And counted in metrics, by state and resource.
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "toolgate_hosts{state=\"unhealthy\",otel_scope_name=\"toolgate\"} 1",
        "toolgate_hosts_promotions_total{otel_scope_name=\"toolgate\"} 1",
        "toolgate_hosts_provisions_total{otel_scope_name=\"toolgate\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    assert!(
        metrics.contains("toolgate_hosts_allocated{resource=\"cpu_millis\""),
        "{metrics}"
    );

    // After a restart, the webhook lists the host it brought up, the session there is open
    // again, and what it reserves is reserved again.
    let before = get(&client, &admin, format!("{base}/v1/hosts/auto-1")).await;
    stop(&mut orchestrator);
    let (_orchestrator, base, admin) = orchestrator_with(dir.path(), &config, reachable);
    let scaled_id = scaled["id"].as_str().unwrap();
    let again = get(&client, &admin, format!("{base}/v1/sessions/{scaled_id}")).await;
    assert_eq!(again["state"], "open", "{again}");
    assert_eq!(again["host"], "auto-1", "{again}");
    let auto = get(&client, &admin, format!("{base}/v1/hosts/auto-1")).await;
    assert_eq!(auto["state"], "ready", "{auto}");
    assert_eq!(auto["sessions"], before["sessions"], "{auto} / {before}");
    assert_eq!(auto["allocated"], before["allocated"], "{auto} / {before}");
}

/// Drivers that loop, flood, log without end, grow their memory, lie about their hosts or
/// ask for a URL no policy allows: the registry goes on answering, sessions still land on
/// the local host, a session that needs more waits its bounded time and is refused, and the
/// forbidden address is never reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_drivers_cannot_hang_or_crash_the_registry() {
    use crate::common::{Server, artifact};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use toolgate::hosts::{PluginDriverSettings, Scaling, SidecarCredentials};

    let forbidden = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let forbidden_url = format!("http://{}/secret", forbidden.local_addr().unwrap());
    let reached = Arc::new(AtomicUsize::new(0));
    let counter = reached.clone();
    tokio::spawn(async move {
        while forbidden.accept().await.is_ok() {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    let component = std::fs::read(artifact("hostile_driver")).unwrap();
    let modes = [
        "loop",
        "flood",
        "many",
        "forbidden",
        "log-flood",
        "memory",
        "liar",
    ];
    let server = Server::start_with(|config| {
        config.placement_wait = Duration::from_secs(3);
        // The local host can hold 200 cpu_millis: a session of 1000 fits nowhere.
        config.overcommit = toolgate::hosts::Overcommit {
            cpu: 0.1,
            memory: 1.0,
            disk: 1.0,
        };
        config.drivers = modes
            .iter()
            .map(|mode| {
                let mut settings = PluginDriverSettings {
                    name: mode.to_string(),
                    config: json!({ "mode": mode, "url": forbidden_url }),
                    allow_private_network: true,
                    ..Default::default()
                };
                // Short calls, listed once a second: the misbehaviour is bounded without
                // taking the machine from the tests that run beside this one.
                settings.limits.timeout = Duration::from_millis(300);
                toolgate::server::config::DriverConfig {
                    name: mode.to_string(),
                    component: component.clone(),
                    settings,
                    secrets: Vec::new(),
                    credentials: SidecarCredentials {
                        token: TOKEN.into(),
                        ca_certificates: Vec::new(),
                        allow_plaintext: false,
                    },
                    scaling: Scaling::default(),
                    list_every: Duration::from_secs(1),
                }
            })
            .collect();
    })
    .await;
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for _ in 0..6 {
        let hosts: Value = quick
            .get(server.url("/v1/hosts"))
            .bearer_auth(&server.admin)
            .send()
            .await
            .expect("the registry answers while its drivers misbehave")
            .json()
            .await
            .unwrap();
        let ids: Vec<&str> = hosts["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["local"], "{hosts}");
        assert_eq!(hosts["drivers"].as_array().unwrap().len(), 1 + modes.len());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Sessions that fit land on the local host.
    let small = json!({ "resources": { "cpu_millis": 100, "memory_mb": 64, "disk_mb": 10, "timeout_ms": 1000 } });
    let opened = server.post(&server.admin, "/v1/sessions", small).await;
    assert_eq!(opened.status(), StatusCode::CREATED);
    let opened: Value = opened.json().await.unwrap();
    assert_eq!(opened["host"], "local");
    // One that fits nowhere asks the drivers for a host; each fails its own way; the answer
    // comes within the wait.
    let started = Instant::now();
    let huge = server
        .post(
            &server.admin,
            "/v1/sessions",
            json!({ "resources": { "cpu_millis": 1000, "memory_mb": 64, "disk_mb": 10, "timeout_ms": 1000 } }),
        )
        .await;
    assert_eq!(huge.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = huge.json().await.unwrap();
    assert_eq!(body["code"], "capacity", "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let figures = server.app.orchestrator.hosts().figures();
    assert!(figures.provision_failures >= 1, "{figures:?}");
    assert_eq!(
        reached.load(Ordering::SeqCst),
        0,
        "no policy lets a driver reach it"
    );
    let alive = quick.get(server.url("/livez")).send().await.unwrap();
    assert_eq!(alive.status(), StatusCode::OK);
    server.stop().await;
}

/// What open sessions reserve is rebuilt from the store after a restart, and given back when
/// they end.
#[tokio::test]
async fn allocation_survives_a_restart_and_is_given_back_when_sessions_end() {
    use crate::common::Server;
    let server = Server::start().await;
    let admin = server.admin.clone();
    let mut ids = Vec::new();
    for (cpu, memory) in [(300, 128), (700, 256)] {
        let opened = server
            .post(
                &admin,
                "/v1/sessions",
                json!({ "resources": { "cpu_millis": cpu, "memory_mb": memory, "disk_mb": 10, "timeout_ms": 60000 } }),
            )
            .await;
        assert_eq!(opened.status(), StatusCode::CREATED);
        let opened: Value = opened.json().await.unwrap();
        assert_eq!(opened["host"], "local");
        ids.push(opened["id"].as_str().unwrap().to_owned());
    }
    let allocated = |host: &Value| {
        (
            host["allocated"]["cpu_millis"].as_u64().unwrap(),
            host["allocated"]["memory_mb"].as_u64().unwrap(),
            host["sessions"].as_u64().unwrap(),
        )
    };
    let local: Value = server
        .get(&admin, "/v1/hosts/local")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(allocated(&local), (1000, 384, 2), "{local}");
    // An admin's drain is kept, across the restart too.
    let drained = server
        .post(&admin, "/v1/hosts/local/drain", json!({}))
        .await;
    assert_eq!(drained.status(), StatusCode::OK);
    let server = server.restart().await;
    let local: Value = server
        .get(&admin, "/v1/hosts/local")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        allocated(&local),
        (1000, 384, 2),
        "after a restart: {local}"
    );
    assert_eq!(local["state"], "draining", "{local}");
    assert_eq!(local["drained"], true, "{local}");
    let undrained = server
        .post(&admin, "/v1/hosts/local/undrain", json!({}))
        .await;
    assert_eq!(undrained.status(), StatusCode::OK);
    let closed = server
        .delete(&admin, &format!("/v1/sessions/{}", ids[1]))
        .await;
    assert_eq!(closed.status(), StatusCode::OK);
    let local: Value = server
        .get(&admin, "/v1/hosts/local")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(allocated(&local), (300, 128, 1), "{local}");
    server.stop().await;
}

/// Clients that hang up while their session is being opened or their preflight's self-test
/// runs leave nothing half made: every reservation belongs to an open session, no probe
/// session stays open, and the session limit holds under a burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_hang_up_leave_no_reservation_and_the_session_limit_holds() {
    use crate::common::Server;
    let server = Server::start_with(|config| config.max_sessions = 4).await;
    let admin = server.admin.clone();
    let small = json!({ "resources": { "cpu_millis": 100, "memory_mb": 64, "disk_mb": 10, "timeout_ms": 60000 } });
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(3))
        .build()
        .unwrap();
    let mut hung_up = Vec::new();
    for path in ["/v1/sessions", "/v1/preflight"].repeat(6) {
        let request = impatient
            .post(server.url(path))
            .bearer_auth(&admin)
            .json(&small)
            .send();
        hung_up.push(tokio::spawn(request));
    }
    let mut cut = 0;
    for request in hung_up {
        cut += usize::from(request.await.unwrap().is_err());
    }
    assert!(cut > 0, "some clients hung up before their answer");
    // Whatever was still being opened or tested when its client left finishes by itself:
    // every reservation then belongs to an open session of the caller's, none to a probe.
    let settled = async |expected: Option<usize>| {
        let started = Instant::now();
        loop {
            let open = server.app.orchestrator.open_sessions();
            let local: Value = server
                .get(&admin, "/v1/hosts/local")
                .await
                .json()
                .await
                .unwrap();
            let listed: Value = server
                .get(&admin, "/v1/sessions?state=open")
                .await
                .json()
                .await
                .unwrap();
            let mine = listed["sessions"].as_array().unwrap().len();
            let sessions = local["sessions"].as_u64().unwrap() as usize;
            let cpu = local["allocated"]["cpu_millis"].as_u64().unwrap();
            if open == sessions
                && open == mine
                && cpu == 100 * open as u64
                && expected.is_none_or(|n| n == open)
            {
                return open;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{open} open, {mine} listed, host: {local}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let open = settled(None).await;
    assert!(open <= 4);
    // A burst past the limit: exactly the room left is taken.
    let mut burst = Vec::new();
    for _ in 0..12 {
        let request = server
            .client
            .post(server.url("/v1/sessions"))
            .bearer_auth(&admin)
            .json(&small)
            .send();
        burst.push(tokio::spawn(request));
    }
    let mut created = 0;
    for request in burst {
        let status = request.await.unwrap().unwrap().status();
        match status {
            StatusCode::CREATED => created += 1,
            StatusCode::SERVICE_UNAVAILABLE => {}
            other => panic!("{other}"),
        }
    }
    assert_eq!(created, 4 - open);
    settled(Some(4)).await;
    // Hints that are not an object, or too long, are refused.
    for placement in [
        json!([]),
        json!({ "avoid": vec!["h"; 65] }),
        json!({ "region": "" }),
    ] {
        let refused = server
            .post(&admin, "/v1/sessions", json!({ "placement": placement }))
            .await;
        assert_eq!(
            refused.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{placement}"
        );
    }
    server.stop().await;
}
