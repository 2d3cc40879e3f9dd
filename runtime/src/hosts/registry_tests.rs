//! The registry with fake sidecars and drivers: promotion, provisioning caps and cooldown,
//! idle release, accounting across a restart, health, hostile driver answers.

use super::*;
use crate::events::{EventHub, HubConfig, MemoryPersistence};

use crate::hosts::driver::DriverFuture;
use crate::hosts::model::PlacementHints;
use crate::sidecar::{Machine, RunTask, SessionSpec, SidecarError, SidecarFuture, TaskFinished};
use std::sync::atomic::AtomicBool;

/// A sidecar that only has a health state.
struct FakeSidecar {
    id: String,
    lost: AtomicBool,
    answered: AtomicBool,
}

impl FakeSidecar {
    fn new(id: &str) -> Arc<Self> {
        Arc::new(Self {
            id: id.into(),
            lost: AtomicBool::new(false),
            answered: AtomicBool::new(true),
        })
    }
}

impl Sidecar for FakeSidecar {
    fn id(&self) -> &str {
        &self.id
    }
    fn open_session(&self, _: SessionSpec) -> SidecarFuture<Result<(), SidecarError>> {
        Box::pin(async { Ok(()) })
    }
    fn run_task(&self, _: RunTask) -> SidecarFuture<Result<TaskFinished, SidecarError>> {
        Box::pin(async { Err(SidecarError::Internal("not in this test".into())) })
    }
    fn close_session(&self, _: &str) -> SidecarFuture<Result<(), SidecarError>> {
        Box::pin(async { Ok(()) })
    }
    fn state(&self) -> SidecarState {
        if self.lost.load(Ordering::SeqCst) {
            SidecarState::Lost
        } else {
            SidecarState::Ready
        }
    }
    fn has_answered(&self) -> bool {
        self.answered.load(Ordering::SeqCst)
    }
    fn machine(&self) -> Option<Machine> {
        None
    }
}

#[derive(Default)]
struct FakeConnector {
    made: Mutex<HashMap<String, Arc<FakeSidecar>>>,
    /// Hosts whose sidecars do not answer when connected.
    silent: Mutex<Vec<String>>,
}

impl FakeConnector {
    fn sidecar(&self, id: &str) -> Arc<FakeSidecar> {
        self.made.lock().unwrap()[id].clone()
    }
}

impl Connector for FakeConnector {
    fn connect(&self, _: &str, report: &HostReport) -> Result<Arc<dyn Sidecar>, String> {
        let sidecar = FakeSidecar::new(&report.id);
        if self.silent.lock().unwrap().contains(&report.id) {
            sidecar.answered.store(false, Ordering::SeqCst);
        }
        self.made
            .lock()
            .unwrap()
            .insert(report.id.clone(), sidecar.clone());
        Ok(sidecar)
    }
}

fn host(id: &str, state: HostState, cpu: u64, memory: u64) -> HostReport {
    HostReport {
        id: id.into(),
        endpoint: format!("http://127.0.0.1:1/{id}"),
        state,
        labels: BTreeMap::new(),
        capacity: Some(Resources {
            cpu_millis: cpu,
            memory_mb: memory,
            disk_mb: 10_000,
        }),
        max_session_timeout_ms: None,
        metrics: BTreeMap::new(),
    }
}

/// A driver with a fixed list, which provisions hosts of a fixed size when asked.
#[derive(Default)]
struct FakeDriver {
    name: String,
    listed: Mutex<Vec<HostReport>>,
    provisions: Mutex<Vec<ProvisionRequest>>,
    released: Mutex<Vec<String>>,
    /// Answered to `provision` instead of a new host.
    answer: Mutex<Option<Result<Vec<HostReport>, DriverError>>>,
    /// `list` takes this long.
    slow: Option<Duration>,
}

impl HostDriver for FakeDriver {
    fn info(&self) -> DriverInfo {
        DriverInfo {
            name: self.name.clone(),
            kind: "plugin".into(),
            description: "a test driver".into(),
            can_provision: true,
        }
    }
    fn list(&self) -> DriverFuture<Result<Vec<HostReport>, DriverError>> {
        let listed = self.listed.lock().unwrap().clone();
        let slow = self.slow;
        Box::pin(async move {
            if let Some(slow) = slow {
                tokio::time::sleep(slow).await;
            }
            Ok(listed)
        })
    }
    fn provision(
        &self,
        request: ProvisionRequest,
    ) -> DriverFuture<Result<Vec<HostReport>, DriverError>> {
        let mut provisions = self.provisions.lock().unwrap();
        provisions.push(request);
        let answer = self.answer.lock().unwrap().clone().unwrap_or_else(|| {
            let new = host(
                &format!("{}-{}", self.name, provisions.len()),
                HostState::Ready,
                8000,
                8192,
            );
            self.listed.lock().unwrap().push(new.clone());
            Ok(vec![new])
        });
        Box::pin(async move { answer })
    }
    fn release(&self, host: &str) -> DriverFuture<Result<(), DriverError>> {
        self.released.lock().unwrap().push(host.to_owned());
        self.listed.lock().unwrap().retain(|h| h.id != host);
        Box::pin(async { Ok(()) })
    }
}

struct Setup {
    registry: Arc<Registry>,
    connector: Arc<FakeConnector>,
    events: Arc<MemoryPersistence>,
}

fn setup(
    fixed: Vec<HostReport>,
    scaling: Option<(Arc<FakeDriver>, Scaling)>,
    config: RegistryConfig,
) -> Setup {
    let events = Arc::new(MemoryPersistence::new());
    let hub = Arc::new(EventHub::new(events.clone(), HubConfig::default()));
    let connector = Arc::new(FakeConnector::default());
    let mut drivers = vec![DriverSlot {
        driver: Arc::new(crate::hosts::StaticDriver { hosts: fixed }),
        list_every: Duration::from_secs(3600),
        scaling: None,
    }];
    if let Some((driver, scaling)) = scaling {
        drivers.push(DriverSlot {
            driver,
            list_every: Duration::from_secs(3600),
            scaling: Some(scaling),
        });
    }
    let registry = Registry::new(config, drivers, connector.clone(), hub);
    Setup {
        registry,
        connector,
        events,
    }
}

fn exact() -> RegistryConfig {
    RegistryConfig {
        overcommit: Overcommit::NONE,
        wait: Duration::from_secs(5),
        ..RegistryConfig::default()
    }
}

fn demand(cpu: u64, memory: u64) -> Demand {
    Demand {
        resources: Resources {
            cpu_millis: cpu,
            memory_mb: memory,
            disk_mb: 10,
        },
        timeout_ms: 1000,
        hints: PlacementHints::default(),
        passive: false,
    }
}

/// The `host.changed` events so far, as (host, from, to).
fn changes(events: &MemoryPersistence) -> Vec<(String, Option<String>, Option<String>)> {
    use crate::events::EventPersistence;
    let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
    events
        .load_after(HOSTS_STREAM, 0, 10_000)
        .iter()
        .map(|e| {
            let data: serde_json::Value = serde_json::from_str(&e.data).unwrap();
            (
                data["host"].as_str().unwrap().to_owned(),
                text(&data["from"]),
                text(&data["to"]),
            )
        })
        .collect()
}

fn state_of(registry: &Registry, id: &str) -> HostState {
    registry.host(id).unwrap().state
}

#[tokio::test]
async fn a_standby_host_is_promoted_when_no_ready_host_fits_and_demoted_when_idle() {
    let config = RegistryConfig {
        demote_after: Duration::ZERO,
        ..exact()
    };
    let s = setup(
        vec![
            host("small", HostState::Ready, 1000, 1024),
            host("big", HostState::Standby, 16_000, 65_536),
        ],
        None,
        config,
    );
    s.registry.refresh(true).await;
    assert_eq!(state_of(&s.registry, "small"), HostState::Ready);
    assert_eq!(state_of(&s.registry, "big"), HostState::Standby);
    // Fits the ready host: the standby one stays in reserve.
    let placed = s.registry.place("s1", &demand(500, 512)).await.unwrap();
    assert_eq!(placed.host, "small");
    assert_eq!(state_of(&s.registry, "big"), HostState::Standby);
    // Larger than any ready host.
    let placed = s.registry.place("s2", &demand(4000, 4096)).await.unwrap();
    assert_eq!(placed.host, "big");
    assert_eq!(state_of(&s.registry, "big"), HostState::Ready);
    assert!(
        changes(&s.events).contains(&("big".into(), Some("standby".into()), Some("ready".into()))),
        "{:?}",
        changes(&s.events)
    );
    assert_eq!(s.registry.figures().promotions, 1);
    // Promoted, it takes sessions like any ready host while it has some...
    s.registry.refresh(false).await;
    assert_eq!(state_of(&s.registry, "big"), HostState::Ready);
    // ...and goes back to reserve once idle.
    s.registry.release_session("s2");
    s.registry.refresh(false).await;
    assert_eq!(state_of(&s.registry, "big"), HostState::Standby);
}

#[tokio::test]
async fn capacity_is_reserved_per_session_released_once_and_restored_after_a_restart() {
    let hosts = vec![
        host("a", HostState::Ready, 4000, 4096),
        host("b", HostState::Ready, 4000, 4096),
    ];
    let s = setup(hosts.clone(), None, exact());
    s.registry.refresh(true).await;
    let mut placed = Vec::new();
    for i in 0..4 {
        let at = s
            .registry
            .place(&format!("s{i}"), &demand(1000, 1024))
            .await
            .unwrap();
        placed.push(at.host);
    }
    // Spread: two each.
    placed.sort();
    assert_eq!(placed, ["a", "a", "b", "b"]);
    let allocated = |r: &Registry, id: &str| r.host(id).unwrap().allocated;
    assert_eq!(allocated(&s.registry, "a").cpu_millis, 2000);
    s.registry.release_session("s0");
    s.registry.release_session("s0");
    let total: u64 = ["a", "b"]
        .iter()
        .map(|h| allocated(&s.registry, h).cpu_millis)
        .sum();
    assert_eq!(total, 3000, "a second release of a session changes nothing");
    // A new registry (a restart) is given the open sessions back from the store.
    let again = setup(hosts, None, exact());
    again.registry.refresh(true).await;
    for i in 1..4 {
        let session = format!("s{i}");
        let host = s.registry.host_of(&session).unwrap();
        assert!(
            again
                .registry
                .restore_session(&session, &host, demand(1000, 1024).resources)
        );
    }
    assert!(
        !again
            .registry
            .restore_session("s9", "gone", Resources::ZERO)
    );
    for id in ["a", "b"] {
        assert_eq!(
            allocated(&again.registry, id),
            allocated(&s.registry, id),
            "host {id}"
        );
        assert_eq!(
            again.registry.host(id).unwrap().sessions,
            s.registry.host(id).unwrap().sessions
        );
    }
    // 3000 of 8000 reserved, at least 1000 on each: 3500 fits nowhere, and nothing waits.
    let refused = again.registry.place("big", &demand(3500, 1024)).await;
    let error = refused.err().unwrap();
    assert!(error.why.contains("too little free"), "{}", error.why);
}

#[tokio::test]
async fn a_waiting_session_gets_the_host_a_driver_brings_up_within_its_caps_and_cooldown() {
    let driver = Arc::new(FakeDriver {
        name: "auto".into(),
        ..Default::default()
    });
    let scaling = Scaling {
        max_hosts: 2,
        max_in_flight: 1,
        cooldown: Duration::from_secs(3600),
        ..Scaling::default()
    };
    let s = setup(
        vec![host("fixed", HostState::Ready, 1000, 1024)],
        Some((driver.clone(), scaling)),
        exact(),
    );
    s.registry.refresh(true).await;
    // Two sessions too large for the fixed host wait together: one provision call.
    let (large, medium) = (demand(4000, 4096), demand(2000, 2048));
    let (first, second) = tokio::join!(
        s.registry.place("s1", &large),
        s.registry.place("s2", &medium),
    );
    assert_eq!(first.unwrap().host, "auto-1");
    assert_eq!(second.unwrap().host, "auto-1");
    assert_eq!(driver.provisions.lock().unwrap().len(), 1);
    let asked = driver.provisions.lock().unwrap()[0].clone();
    assert_eq!(asked.count, 1);
    assert!(asked.resources.unwrap().cpu_millis >= 2000);
    // Full again, and the driver is in its cooldown: refused at once, saying why.
    let refused = s
        .registry
        .place("s3", &demand(4000, 4096))
        .await
        .err()
        .unwrap();
    assert!(refused.why.contains("cooldown"), "{}", refused.why);
    assert!(refused.retry_after >= Duration::from_secs(1));
    assert_eq!(driver.provisions.lock().unwrap().len(), 1);
    assert_eq!(s.registry.figures().no_capacity, 1);
}

#[tokio::test]
async fn provisioning_stops_at_the_maximum_and_a_failed_call_is_counted() {
    let driver = Arc::new(FakeDriver {
        name: "auto".into(),
        ..Default::default()
    });
    let scaling = Scaling {
        max_hosts: 1,
        cooldown: Duration::ZERO,
        ..Scaling::default()
    };
    let s = setup(vec![], Some((driver.clone(), scaling)), exact());
    s.registry.refresh(true).await;
    let placed = s.registry.place("s1", &demand(8000, 8192)).await.unwrap();
    assert_eq!(placed.host, "auto-1");
    let refused = s
        .registry
        .place("s2", &demand(1000, 1024))
        .await
        .err()
        .unwrap();
    assert!(
        refused.why.contains("maximum of 1 hosts"),
        "{}",
        refused.why
    );
    assert_eq!(driver.provisions.lock().unwrap().len(), 1);

    // A driver whose provision call fails: the session is refused without waiting its
    // whole wait, and the failure is counted.
    let failing = Arc::new(FakeDriver {
        name: "broken".into(),
        answer: Mutex::new(Some(Err(DriverError::Unavailable {
            driver: "broken".into(),
            message: "the autoscaler is down".into(),
        }))),
        ..Default::default()
    });
    let scaling = Scaling {
        cooldown: Duration::from_secs(3600),
        ..Scaling::default()
    };
    let s = setup(vec![], Some((failing, scaling)), exact());
    let started = Instant::now();
    let refused = s.registry.place("s1", &demand(1, 1)).await.err().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert!(refused.why.contains("cooldown"), "{}", refused.why);
    assert!(
        refused.why.contains("the autoscaler is down"),
        "{}",
        refused.why
    );
    assert_eq!(s.registry.figures().provision_failures, 1);
}

#[tokio::test]
async fn a_session_that_names_its_hosts_never_makes_a_driver_provision() {
    let driver = Arc::new(FakeDriver {
        name: "auto".into(),
        ..Default::default()
    });
    let s = setup(
        vec![host("fixed", HostState::Ready, 1000, 1024)],
        Some((driver.clone(), Scaling::default())),
        exact(),
    );
    s.registry.refresh(true).await;
    let mut pinned = demand(1, 1);
    pinned.hints.hosts = vec!["no-such-host".into()];
    let started = Instant::now();
    let refused = s.registry.place("s", &pinned).await.err().unwrap();
    assert!(
        refused.why.contains("only on the hosts it names"),
        "{}",
        refused.why
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(driver.provisions.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_host_that_never_answers_is_released_even_at_the_minimum() {
    let driver = Arc::new(FakeDriver {
        name: "auto".into(),
        ..Default::default()
    });
    // min = max = 1: the one host it may have never answers.
    let scaling = Scaling {
        min_hosts: 1,
        max_hosts: 1,
        cooldown: Duration::ZERO,
        provision_timeout: Duration::from_millis(200),
        ..Scaling::default()
    };
    let s = setup(
        vec![],
        Some((driver.clone(), scaling)),
        RegistryConfig {
            wait: Duration::from_millis(100),
            ..exact()
        },
    );
    s.connector.silent.lock().unwrap().push("auto-1".into());
    assert!(s.registry.place("s1", &demand(1, 1)).await.is_err());
    tokio::time::sleep(Duration::from_millis(250)).await;
    s.registry.refresh(false).await;
    for _ in 0..100 {
        if s.registry.hosts().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(driver.released.lock().unwrap().as_slice(), ["auto-1"]);
    // The driver may be asked again, and this time its host answers.
    let placed = s.registry.place("s2", &demand(1, 1)).await.unwrap();
    assert_eq!(placed.host, "auto-2");
}

#[tokio::test]
async fn idle_hosts_are_released_down_to_the_minimum_and_silent_ones_after_their_timeout() {
    let driver = Arc::new(FakeDriver {
        name: "auto".into(),
        ..Default::default()
    });
    for i in 1..=3 {
        driver.listed.lock().unwrap().push(host(
            &format!("pool-{i}"),
            HostState::Ready,
            1000,
            1024,
        ));
    }
    let scaling = Scaling {
        min_hosts: 1,
        idle_release: Duration::ZERO,
        ..Scaling::default()
    };
    let s = setup(vec![], Some((driver.clone(), scaling)), exact());
    s.registry.refresh(true).await;
    assert_eq!(s.registry.hosts().len(), 3);
    // One host keeps a session: it is never released while it has one.
    let busy = s
        .registry
        .place("s1", &demand(500, 512))
        .await
        .unwrap()
        .host;
    s.registry.refresh(false).await;
    for _ in 0..100 {
        if driver.released.lock().unwrap().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let released = driver.released.lock().unwrap().clone();
    assert_eq!(released.len(), 2, "{released:?}");
    assert!(!released.contains(&busy));
    let left: Vec<String> = s.registry.hosts().into_iter().map(|h| h.id).collect();
    assert_eq!(left, std::slice::from_ref(&busy));
    assert!(changes(&s.events).iter().any(|(_, _, to)| to.is_none()));
    assert_eq!(s.registry.figures().releases, 2);
    // The minimum holds even once the last one is idle.
    s.registry.release_session("s1");
    tokio::time::sleep(Duration::from_millis(350)).await;
    s.registry.refresh(false).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(s.registry.hosts().len(), 1);

    // A host brought up whose sidecar never answers is provisioning, takes nothing, and is
    // released after the provision timeout.
    let driver = Arc::new(FakeDriver {
        name: "slow".into(),
        ..Default::default()
    });
    let scaling = Scaling {
        provision_timeout: Duration::from_millis(200),
        ..Scaling::default()
    };
    let s = setup(
        vec![],
        Some((driver.clone(), scaling)),
        RegistryConfig {
            wait: Duration::from_millis(100),
            ..exact()
        },
    );
    s.connector.silent.lock().unwrap().push("slow-1".into());
    let refused = s.registry.place("s1", &demand(1, 1)).await.err().unwrap();
    assert!(refused.why.contains("not up yet"), "{}", refused.why);
    assert_eq!(state_of(&s.registry, "slow-1"), HostState::Provisioning);
    tokio::time::sleep(Duration::from_millis(250)).await;
    s.registry.refresh(false).await;
    for _ in 0..100 {
        if s.registry.hosts().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(s.registry.hosts().is_empty());
    assert_eq!(driver.released.lock().unwrap().as_slice(), ["slow-1"]);
}

#[tokio::test]
async fn a_host_that_stops_answering_is_unhealthy_until_it_answers_and_drains_hold() {
    let s = setup(
        vec![
            host("a", HostState::Ready, 4000, 4096),
            host("b", HostState::Ready, 4000, 4096),
        ],
        None,
        RegistryConfig {
            wait: Duration::ZERO,
            ..exact()
        },
    );
    s.registry.refresh(true).await;
    s.connector.sidecar("a").lost.store(true, Ordering::SeqCst);
    s.registry.update_states();
    assert_eq!(state_of(&s.registry, "a"), HostState::Unhealthy);
    for i in 0..3 {
        let placed = s.registry.place(&format!("s{i}"), &demand(1, 1)).await;
        assert_eq!(placed.unwrap().host, "b");
    }
    s.connector.sidecar("a").lost.store(false, Ordering::SeqCst);
    s.registry.update_states();
    assert_eq!(state_of(&s.registry, "a"), HostState::Ready);
    // Drained by an admin: ready again only once undrained.
    s.registry.drain("a", true).unwrap();
    s.registry.drain("b", true).unwrap();
    let refused = s.registry.place("x", &demand(1, 1)).await.err().unwrap();
    assert!(refused.why.contains("2 not ready"), "{}", refused.why);
    s.registry.refresh(false).await;
    assert_eq!(state_of(&s.registry, "a"), HostState::Draining);
    s.registry.drain("a", false).unwrap();
    assert_eq!(
        s.registry.place("x", &demand(1, 1)).await.unwrap().host,
        "a"
    );
    assert!(s.registry.drain("nope", true).is_none());
    let seen = changes(&s.events);
    for expected in [
        ("a", "ready", "unhealthy"),
        ("a", "unhealthy", "ready"),
        ("a", "ready", "draining"),
        ("a", "draining", "ready"),
    ] {
        let expected = (
            expected.0.to_owned(),
            Some(expected.1.to_owned()),
            Some(expected.2.to_owned()),
        );
        assert!(seen.contains(&expected), "{expected:?} in {seen:?}");
    }
}

#[tokio::test]
async fn a_driver_answer_that_breaks_the_contract_changes_nothing() {
    let driver = Arc::new(FakeDriver {
        name: "liar".into(),
        ..Default::default()
    });
    let s = setup(vec![], Some((driver.clone(), Scaling::default())), exact());
    let hostile: Vec<Vec<HostReport>> = vec![
        vec![
            host("twice", HostState::Ready, 1, 1),
            host("twice", HostState::Ready, 1, 1),
        ],
        vec![HostReport {
            endpoint: "file:///etc/passwd".into(),
            ..host("bad", HostState::Ready, 1, 1)
        }],
        vec![host("../../x", HostState::Ready, 1, 1)],
        vec![host("events", HostState::Ready, 1, 1)],
        (0..2000)
            .map(|i| host(&format!("h{i}"), HostState::Ready, 1, 1))
            .collect(),
        vec![HostReport {
            metrics: [("load".to_owned(), f64::NAN)].into(),
            ..host("nan", HostState::Ready, 1, 1)
        }],
    ];
    for answer in hostile {
        *driver.listed.lock().unwrap() = answer;
        s.registry.refresh(true).await;
        assert!(s.registry.hosts().is_empty());
    }
    // The same through a provision call: refused, counted, nothing added.
    *driver.answer.lock().unwrap() = Some(Ok(vec![host("../x", HostState::Ready, 1, 1)]));
    let refused = s.registry.place("s", &demand(1, 1)).await;
    assert!(refused.is_err());
    assert!(s.registry.hosts().is_empty());
    assert_eq!(s.registry.figures().provision_failures, 1);
}

#[tokio::test]
async fn a_slow_driver_never_delays_the_health_of_other_hosts() {
    let slow = Arc::new(FakeDriver {
        name: "slow".into(),
        slow: Some(Duration::from_secs(20)),
        ..Default::default()
    });
    let s = setup(
        vec![host("a", HostState::Ready, 1000, 1000)],
        Some((slow, Scaling::default())),
        exact(),
    );
    let started = Instant::now();
    s.registry.refresh(false).await;
    while s.registry.host("a").is_none() {
        assert!(started.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    s.registry.refresh(false).await;
    assert_eq!(state_of(&s.registry, "a"), HostState::Ready);
    s.connector.sidecar("a").lost.store(true, Ordering::SeqCst);
    // The slow driver is still being listed; refreshes go on without it.
    s.registry.refresh(false).await;
    assert_eq!(state_of(&s.registry, "a"), HostState::Unhealthy);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_passive_demand_never_promotes_or_provisions() {
    let driver = Arc::new(FakeDriver {
        name: "auto".into(),
        ..Default::default()
    });
    let s = setup(
        vec![
            host("small", HostState::Ready, 100, 100),
            host("reserve", HostState::Standby, 8000, 8192),
        ],
        Some((driver.clone(), Scaling::default())),
        exact(),
    );
    s.registry.refresh(true).await;
    let mut probe = demand(1000, 1000);
    probe.passive = true;
    let refused = s.registry.place("probe", &probe).await.err().unwrap();
    assert!(
        refused.why.contains("no standby host is promoted"),
        "{}",
        refused.why
    );
    assert_eq!(state_of(&s.registry, "reserve"), HostState::Standby);
    assert!(driver.provisions.lock().unwrap().is_empty());
    probe.resources = Resources {
        cpu_millis: 10,
        memory_mb: 10,
        disk_mb: 1,
    };
    assert_eq!(
        s.registry.place("probe", &probe).await.unwrap().host,
        "small"
    );
}

#[tokio::test]
async fn a_drain_holds_when_the_driver_lists_the_host_again_and_after_a_restart() {
    let driver = Arc::new(FakeDriver {
        name: "auto".into(),
        ..Default::default()
    });
    driver
        .listed
        .lock()
        .unwrap()
        .push(host("pool-1", HostState::Ready, 1000, 1000));
    let s = setup(vec![], Some((driver.clone(), Scaling::default())), exact());
    s.registry.refresh(true).await;
    s.registry.drain("pool-1", true).unwrap();
    // Left out of one listing (it has no sessions, so it leaves), then listed again.
    let listed = std::mem::take(&mut *driver.listed.lock().unwrap());
    s.registry.refresh(true).await;
    assert!(s.registry.host("pool-1").is_none());
    *driver.listed.lock().unwrap() = listed.clone();
    s.registry.refresh(true).await;
    assert_eq!(state_of(&s.registry, "pool-1"), HostState::Draining);
    // A registry started with the drains kept in the store.
    let restarted = setup(
        vec![],
        Some((driver.clone(), Scaling::default())),
        RegistryConfig {
            drained: vec!["pool-1".into()],
            ..exact()
        },
    );
    restarted.registry.refresh(true).await;
    assert_eq!(state_of(&restarted.registry, "pool-1"), HostState::Draining);
    restarted.registry.drain("pool-1", false).unwrap();
    assert_eq!(state_of(&restarted.registry, "pool-1"), HostState::Ready);
}

#[tokio::test]
async fn a_drivers_standby_hosts_are_its_reserve_and_never_released_as_idle() {
    let driver = Arc::new(FakeDriver {
        name: "auto".into(),
        ..Default::default()
    });
    driver
        .listed
        .lock()
        .unwrap()
        .push(host("sb", HostState::Standby, 1000, 1000));
    let scaling = Scaling {
        idle_release: Duration::ZERO,
        ..Scaling::default()
    };
    let s = setup(vec![], Some((driver.clone(), scaling)), exact());
    s.registry.refresh(true).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    s.registry.refresh(false).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(driver.released.lock().unwrap().is_empty());
    assert_eq!(state_of(&s.registry, "sb"), HostState::Standby);
}
