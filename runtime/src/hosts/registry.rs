//! The host registry: every driver's hosts with their state, capacity and allocation.
//!
//! A host's state comes from its driver's report, its sidecar's health checks and the
//! admins (drain). Each change is logged, counted and published as a `host.changed` event
//! on the admins' host stream (kept in the store like a session's events). Capacity is
//! reserved per session at placement and given back when the session ends; after a restart
//! the orchestrator reserves its open sessions again. When no ready host fits a session, a
//! standby host is promoted, else a driver that can is asked for a host, and the session
//! waits a bounded time for one.

use super::driver::{DriverError, DriverInfo, HostDriver, ProvisionRequest, check_reports};
use super::model::{Demand, HostReport, Overcommit, Resources};
use super::placement::{NO_REGION, NoFit, Query, Slot, choose};
use crate::events::EventHub;
use crate::sidecar::{Sidecar, SidecarState};
use crate::vocabulary::{EventName, HostState, PlacementStrategy};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

mod autoscale;

/// The stream of `host.changed` events (a name no session id can take).
pub const HOSTS_STREAM: &str = "hosts";

/// The room of a host whose capacity nobody reports.
const UNLIMITED: Resources = Resources {
    cpu_millis: u64::MAX,
    memory_mb: u64::MAX,
    disk_mb: u64::MAX,
};

/// How long a driver call may take before it counts as failed.
const DRIVER_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// When and how far a driver that can provision scales.
#[derive(Debug, Clone, PartialEq)]
pub struct Scaling {
    /// Hosts kept even when idle.
    pub min_hosts: usize,
    /// Hosts of this driver at most, those being brought up included.
    pub max_hosts: usize,
    /// Hosts being brought up (asked for, not answering yet) at most.
    pub max_in_flight: usize,
    /// Time between two provision calls.
    pub cooldown: Duration,
    /// A host without sessions for this long is released (down to `min_hosts`).
    pub idle_release: Duration,
    /// A host brought up that does not answer within this is released as failed.
    pub provision_timeout: Duration,
}

impl Default for Scaling {
    fn default() -> Self {
        Self {
            min_hosts: 0,
            max_hosts: 10,
            max_in_flight: 2,
            cooldown: Duration::from_secs(30),
            idle_release: Duration::from_secs(600),
            provision_timeout: Duration::from_secs(300),
        }
    }
}

/// One driver of the registry.
pub struct DriverSlot {
    pub driver: Arc<dyn HostDriver>,
    /// How often its hosts are listed.
    pub list_every: Duration,
    /// `Some` for a driver that provisions.
    pub scaling: Option<Scaling>,
}

#[derive(Debug, Clone)]
pub struct RegistryConfig {
    pub strategy: PlacementStrategy,
    pub overcommit: Overcommit,
    /// How long a session waits for a promoted or provisioned host before `capacity`.
    pub wait: Duration,
    /// How often states are refreshed from the sidecars' health.
    pub refresh: Duration,
    /// A standby host promoted for want of room goes back to standby once idle this long.
    pub demote_after: Duration,
    /// Hosts an admin drained (kept in the store): they stay draining, across restarts and
    /// whenever their driver lists them again, until undrained.
    pub drained: Vec<String>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            strategy: PlacementStrategy::Spread,
            overcommit: Overcommit::default(),
            wait: Duration::from_secs(30),
            refresh: Duration::from_secs(1),
            demote_after: Duration::from_secs(600),
            drained: Vec::new(),
        }
    }
}

/// Makes the client of a host's sidecar from its endpoint.
pub trait Connector: Send + Sync {
    fn connect(&self, driver: &str, report: &HostReport) -> Result<Arc<dyn Sidecar>, String>;
}

/// A host as `GET /v1/hosts` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HostView {
    pub id: String,
    /// The driver that reports it.
    pub driver: String,
    /// `local`, or its sidecar's URL (admin keys only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub endpoint: Option<String>,
    pub state: HostState,
    /// Why it is in that state.
    pub reason: String,
    /// When it entered it (ms since the epoch).
    pub state_since_ms: i64,
    /// Drained by an admin (it stays `draining` until undrained).
    pub drained: bool,
    pub labels: BTreeMap<String, String>,
    /// What the host has, as its driver reports it or its sidecar measures it; absent when
    /// neither says (a sidecar of an earlier version): placement then does not limit it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub capacity: Option<Resources>,
    /// What sessions may reserve: the capacity times the overcommit factors.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub allocatable: Option<Resources>,
    /// What open sessions reserve.
    pub allocated: Resources,
    pub sessions: usize,
    /// The longest session timeout it takes (ms); absent: any.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub max_session_timeout_ms: Option<u64>,
    /// Load and other figures of its machine (admin keys only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub metrics: Option<BTreeMap<String, f64>>,
}

impl HostView {
    /// What a key that is not an admin's may see: no endpoint, no machine figures.
    pub fn public(self) -> Self {
        Self {
            endpoint: None,
            metrics: None,
            ..self
        }
    }
}

/// Where a session was placed.
pub struct Placed {
    pub host: String,
    pub sidecar: Arc<dyn Sidecar>,
}

/// Why no host took a session. `retry_after` is a hint for the client.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no host has room for the session: {why}")]
pub struct NoCapacity {
    pub why: String,
    pub retry_after: Duration,
}

/// Counters for metrics.
#[derive(Default)]
struct Counters {
    changes: AtomicU64,
    promotions: AtomicU64,
    provisions: AtomicU64,
    provision_failures: AtomicU64,
    releases: AtomicU64,
    no_capacity: AtomicU64,
}

/// What metrics read on a scrape.
#[derive(Debug, Clone, Default)]
pub struct RegistryFigures {
    pub by_state: Vec<(HostState, u64)>,
    /// Summed over the hosts that take sessions (ready).
    pub capacity: Resources,
    pub allocatable: Resources,
    pub allocated: Resources,
    pub state_changes: u64,
    pub promotions: u64,
    pub provisions: u64,
    pub provision_failures: u64,
    pub releases: u64,
    pub no_capacity: u64,
}

struct Host {
    report: HostReport,
    driver: usize,
    sidecar: Arc<dyn Sidecar>,
    reason: String,
    state_since_ms: i64,
    drained: bool,
    /// `None`: unknown (not limited).
    /// A standby host promoted for want of room: ready although its driver says standby.
    promoted: bool,
    capacity: Option<Resources>,
    metrics: BTreeMap<String, f64>,
    sessions: usize,
    /// Since when it has had no sessions.
    idle_since: Instant,
    /// Brought up by a provision call at this time.
    provisioned_at: Option<Instant>,
    /// When the registry first heard of it.
    seen_at: Instant,
    /// Being released: takes nothing, leaves once its driver answered.
    releasing: bool,
}

#[derive(Default)]
struct Inner {
    /// Parallel vectors: `slots[i]` is what placement reads of `hosts[i]`.
    hosts: Vec<Host>,
    slots: Vec<Slot>,
    /// Session → (host id, reserved).
    reservations: HashMap<String, (String, Resources)>,
    /// Per driver: provision calls under way, and when the last one was made.
    in_flight_calls: HashMap<usize, usize>,
    last_provision: HashMap<usize, Instant>,
    /// Per driver: when it was last listed.
    last_listed: HashMap<usize, Instant>,
    /// Drivers being listed now.
    listing: std::collections::HashSet<usize>,
    /// Per driver: why its last provision call failed (until one succeeds).
    provision_failures: HashMap<usize, String>,
    /// Host ids an admin drained, whether the host is listed now or not.
    drained: std::collections::HashSet<String>,
    /// Host id → index in `hosts` and `slots` (rebuilt when hosts come or go).
    by_id: HashMap<String, usize>,
    /// Region label → its interned id in the slots.
    regions: HashMap<String, u32>,
}

/// The id of a region label (a new one for a label not seen before).
fn intern(regions: &mut HashMap<String, u32>, region: Option<&str>) -> u32 {
    let Some(region) = region else {
        return NO_REGION;
    };
    if let Some(id) = regions.get(region) {
        return *id;
    }
    let id = regions.len() as u32;
    regions.insert(region.to_owned(), id);
    id
}

impl Inner {
    fn index(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    fn id(&self, i: usize) -> &str {
        &self.hosts[i].report.id
    }

    /// After hosts came or went: the id index and each slot's rank in id order.
    fn reindex(&mut self) {
        self.by_id = self
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (h.report.id.clone(), i))
            .collect();
        let mut order: Vec<usize> = (0..self.hosts.len()).collect();
        order.sort_by(|a, b| self.hosts[*a].report.id.cmp(&self.hosts[*b].report.id));
        for (rank, i) in order.into_iter().enumerate() {
            self.slots[i].rank = rank as u32;
        }
    }

    fn region_id(&mut self, region: Option<&str>) -> u32 {
        intern(&mut self.regions, region)
    }

    /// A demand with its hints resolved to slots (hosts nobody has are simply not there).
    fn query(&self, demand: &Demand) -> Query {
        let hints = &demand.hints;
        let resolve = |ids: &[String]| -> Vec<usize> {
            let mut found: Vec<usize> = ids.iter().filter_map(|id| self.index(id)).collect();
            found.sort_unstable();
            found.dedup();
            found
        };
        Query {
            resources: demand.resources,
            timeout_ms: demand.timeout_ms,
            region: hints
                .region
                .as_deref()
                .and_then(|r| self.regions.get(r).copied()),
            only: (!hints.hosts.is_empty()).then(|| resolve(&hints.hosts)),
            avoid: resolve(&hints.avoid),
        }
    }
}

pub struct Registry {
    config: RegistryConfig,
    drivers: Vec<DriverSlot>,
    infos: Vec<DriverInfo>,
    connector: Arc<dyn Connector>,
    hub: Arc<EventHub>,
    inner: Mutex<Inner>,
    /// Woken by every change that may give a waiting session room.
    changed: tokio::sync::Notify,
    counters: Counters,
}

/// Wall-clock ms since the epoch, for the times hosts entered their state.
fn now_ms() -> i64 {
    i64::try_from(crate::sidecar::wall_ms()).unwrap_or(i64::MAX)
}

impl Registry {
    pub fn new(
        config: RegistryConfig,
        drivers: Vec<DriverSlot>,
        connector: Arc<dyn Connector>,
        hub: Arc<EventHub>,
    ) -> Arc<Self> {
        let infos = drivers.iter().map(|d| d.driver.info()).collect();
        let inner = Inner {
            drained: config.drained.iter().cloned().collect(),
            ..Inner::default()
        };
        Arc::new(Self {
            config,
            drivers,
            infos,
            connector,
            hub,
            inner: Mutex::new(inner),
            changed: tokio::sync::Notify::new(),
            counters: Counters::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn drivers(&self) -> &[DriverInfo] {
        &self.infos
    }

    pub fn strategy(&self) -> PlacementStrategy {
        self.config.strategy
    }

    /// Lists every driver now (at start, before sessions are recovered), then keeps the
    /// registry fresh in the background until `stop`.
    pub async fn start(self: &Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        self.refresh(true).await;
        let weak = Arc::downgrade(self);
        let every = self.config.refresh;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
                let Some(registry) = weak.upgrade() else {
                    return;
                };
                registry.refresh(false).await;
            }
        });
    }

    /// Waits (at most `within`) until every host's sidecar has answered a health check, so
    /// sessions recovered after a restart find the hosts drivers report ready to take them
    /// back. Hosts still silent then are left to their health checks.
    pub async fn await_first_answers(&self, within: Duration) {
        let until = tokio::time::Instant::now() + within;
        loop {
            let silent = self
                .lock()
                .hosts
                .iter()
                .filter(|h| !h.sidecar.has_answered())
                .count();
            if silent == 0 || tokio::time::Instant::now() >= until {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.update_states();
    }

    /// Lists the drivers that are due (all when `all`), merges their reports, refreshes
    /// every host's state from its sidecar, and releases what has been idle too long.
    pub async fn refresh(self: &Arc<Self>, all: bool) {
        // Each due driver is listed on a task of its own, one listing per driver at a time:
        // a slow or looping driver delays only its own hosts, never the health of the others.
        let due: Vec<usize> = {
            let mut inner = self.lock();
            let due: Vec<usize> = (0..self.drivers.len())
                .filter(|i| {
                    !inner.listing.contains(i)
                        && (all
                            || inner
                                .last_listed
                                .get(i)
                                .is_none_or(|at| at.elapsed() >= self.drivers[*i].list_every))
                })
                .collect();
            inner.listing.extend(due.iter().copied());
            due
        };
        if all {
            // At start, every host is known before sessions are recovered onto them. The
            // drivers are listed one after the other in order (local, static, then plugins),
            // so a plugin driver can never claim the id of a configured sidecar first.
            for i in due {
                self.clone().list_driver(i).await;
            }
        } else {
            for i in due {
                let this = self.clone();
                tokio::spawn(async move { this.list_driver(i).await });
            }
        }
        self.update_states();
        self.scale_down();
    }

    /// Lists one driver's hosts and takes them in.
    async fn list_driver(self: Arc<Self>, i: usize) {
        let listed = tokio::time::timeout(DRIVER_CALL_TIMEOUT, self.drivers[i].driver.list()).await;
        {
            let mut inner = self.lock();
            inner.last_listed.insert(i, Instant::now());
            inner.listing.remove(&i);
        }
        let name = self.infos[i].name.clone();
        let reports = match listed {
            Ok(Ok(reports)) => reports,
            Ok(Err(error)) => {
                tracing::warn!(driver = %name, %error, code = error.code(), "cannot list the driver's hosts");
                return;
            }
            Err(_) => {
                tracing::warn!(driver = %name, "listing the driver's hosts timed out");
                return;
            }
        };
        if let Err(error) = check_reports(&name, &reports) {
            tracing::warn!(driver = %name, %error, "the driver's hosts are refused");
            return;
        }
        self.merge(i, reports, false);
        self.update_states();
    }

    /// Takes a driver's reports in: new hosts are added (their sidecar connected), known
    /// ones updated; hosts it no longer lists leave once they have no sessions. With
    /// `provisioned`, the reports answer a provision call: nothing else of the driver's
    /// leaves.
    fn merge(&self, driver: usize, reports: Vec<HostReport>, provisioned: bool) {
        let name = &self.infos[driver].name;
        let mut events = Vec::new();
        {
            let mut inner = self.lock();
            let listed: std::collections::HashSet<String> =
                reports.iter().map(|r| r.id.clone()).collect();
            for report in reports {
                match inner.index(&report.id) {
                    Some(i) if inner.hosts[i].driver != driver => {
                        tracing::warn!(driver = %name, host = %report.id, "host id already reported by another driver; ignored");
                    }
                    Some(i) => {
                        let host = &mut inner.hosts[i];
                        if host.report.endpoint != report.endpoint {
                            tracing::warn!(driver = %name, host = %report.id, "a host cannot change its endpoint; release it and report a new id");
                        }
                        let endpoint = host.report.endpoint.clone();
                        host.report = HostReport { endpoint, ..report };
                    }
                    None => {
                        let sidecar = match self.connector.connect(name, &report) {
                            Ok(sidecar) => sidecar,
                            Err(error) => {
                                tracing::warn!(driver = %name, host = %report.id, %error, "cannot connect to the host's sidecar");
                                continue;
                            }
                        };
                        let drained = inner.drained.contains(&report.id);
                        let mut slot = Slot::new(HostState::Provisioning, Resources::ZERO);
                        slot.max_timeout_ms = report.max_session_timeout_ms.unwrap_or(u64::MAX);
                        slot.region = inner.region_id(report.region());
                        let mut host = Host {
                            report,
                            driver,
                            sidecar,
                            reason: String::new(),
                            state_since_ms: now_ms(),
                            drained,
                            promoted: false,
                            capacity: None,
                            metrics: BTreeMap::new(),
                            sessions: 0,
                            idle_since: Instant::now(),
                            provisioned_at: provisioned.then(Instant::now),
                            seen_at: Instant::now(),
                            releasing: false,
                        };
                        // Its first state is the one it is in (a static sidecar that answers
                        // is ready at once); the room comes with the next state update.
                        let (state, reason) =
                            effective_state(&host, self.drivers[driver].scaling.as_ref());
                        slot.state = state;
                        host.reason = reason;
                        events.push((
                            host.report.id.clone(),
                            None,
                            Some(state),
                            host.reason.clone(),
                        ));
                        let index = inner.hosts.len();
                        inner.by_id.insert(host.report.id.clone(), index);
                        inner.hosts.push(host);
                        inner.slots.push(slot);
                    }
                }
            }
            if !provisioned {
                // Hosts the driver stopped listing: gone once empty, draining meanwhile.
                let mut i = 0;
                while i < inner.hosts.len() {
                    let host = &inner.hosts[i];
                    if host.driver == driver && !listed.contains(&host.report.id) {
                        if host.sessions == 0
                            && host
                                .provisioned_at
                                .is_none_or(|at| at.elapsed() > Duration::from_secs(5))
                        {
                            let from = inner.slots[i].state;
                            let id = inner.hosts.remove(i).report.id;
                            inner.slots.remove(i);
                            events.push((
                                id,
                                Some(from),
                                None,
                                "its driver no longer lists it".into(),
                            ));
                            continue;
                        }
                        inner.hosts[i].report.state = HostState::Draining;
                    }
                    i += 1;
                }
            }
            inner.reindex();
        }
        for (host, from, to, reason) in events {
            self.record(&host, name, from, to, &reason);
        }
        self.changed.notify_waiters();
    }

    /// Every host's state from its report, its sidecar and the admins; records changes.
    pub fn update_states(&self) {
        let mut changes = Vec::new();
        {
            let mut inner = self.lock();
            let inner = &mut *inner;
            let regions = &mut inner.regions;
            for (host, slot) in inner.hosts.iter_mut().zip(inner.slots.iter_mut()) {
                if let Some(machine) = host.sidecar.machine() {
                    host.capacity = Some(host.report.capacity.unwrap_or((&machine).into()));
                    host.metrics = machine.metrics;
                } else {
                    host.capacity = host.report.capacity;
                }
                for (key, value) in &host.report.metrics {
                    host.metrics.insert(key.clone(), *value);
                }
                let room = host
                    .capacity
                    .map_or(UNLIMITED, |c| c.scaled(self.config.overcommit));
                if room != slot.room() {
                    slot.set_room(room);
                }
                slot.max_timeout_ms = host.report.max_session_timeout_ms.unwrap_or(u64::MAX);
                slot.region = intern(regions, host.report.region());
                let scaling = self.drivers[host.driver].scaling.as_ref();
                let (state, reason) = effective_state(host, scaling);
                if state != slot.state || (state != HostState::Ready && reason != host.reason) {
                    if state != slot.state {
                        changes.push((
                            host.report.id.clone(),
                            self.infos[host.driver].name.clone(),
                            Some(slot.state),
                            Some(state),
                            reason.clone(),
                        ));
                        host.state_since_ms = now_ms();
                    }
                    slot.state = state;
                    host.reason = reason;
                }
            }
        }
        let any = !changes.is_empty();
        for (host, driver, from, to, reason) in changes {
            self.record(&host, &driver, from, to, &reason);
        }
        if any {
            self.changed.notify_waiters();
        }
    }

    /// Logs, counts and publishes one state change: `from` is `None` for a host that was
    /// just added, `to` is `None` for one that left the registry.
    fn record(
        &self,
        host: &str,
        driver: &str,
        from: Option<HostState>,
        to: Option<HostState>,
        reason: &str,
    ) {
        self.counters.changes.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            host,
            driver,
            from = from.map(HostState::as_str),
            to = to.map(HostState::as_str),
            reason,
            "host state"
        );
        self.hub.publish(
            HOSTS_STREAM,
            EventName::HostChanged,
            serde_json::json!({
                "host": host, "driver": driver, "from": from, "to": to, "reason": reason,
                "at_ms": now_ms(),
            }),
        );
    }

    /// Places a session: the best ready host, else a promoted standby one, else it waits
    /// (at most the configured wait) for a host a driver brings up.
    pub async fn place(
        self: &Arc<Self>,
        session: &str,
        demand: &Demand,
    ) -> Result<Placed, NoCapacity> {
        let deadline = tokio::time::Instant::now() + self.config.wait;
        loop {
            // Registered before looking, so a change between the look and the wait wakes it.
            let changed = self.changed.notified();
            let why = match self.try_place(session, demand) {
                Ok(placed) => return Ok(placed),
                Err(no_fit) => no_fit,
            };
            if demand.passive {
                return Err(NoCapacity {
                    why: format!("{why}; no standby host is promoted and no driver asked for this"),
                    retry_after: self.retry_after(),
                });
            }
            let asked = self.provision_for(demand);
            // Wait only while capacity is on its way.
            let coming = matches!(asked, Some(Ok(())));
            if tokio::time::Instant::now() >= deadline || !coming {
                self.counters.no_capacity.fetch_add(1, Ordering::Relaxed);
                let mut why = why.to_string();
                if let Some(Err(refusal)) = &asked {
                    why.push_str(&format!("; {refusal}"));
                } else if asked.is_some() {
                    why.push_str("; more capacity was asked for and is not up yet");
                }
                return Err(NoCapacity {
                    why,
                    retry_after: self.retry_after(),
                });
            }
            let _ = tokio::time::timeout_at(deadline, changed).await;
        }
    }

    /// Places a session on a ready host, else on a standby host promoted for it; never
    /// waits. The benchmark's unit of work.
    pub fn try_place(&self, session: &str, demand: &Demand) -> Result<Placed, NoFit> {
        let (placed, driver, reason) = {
            let mut inner = self.lock();
            let (i, standby) = self.pick(&inner, demand)?;
            let placed = Self::reserve(&mut inner, i, session, demand.resources);
            if !standby {
                return Ok(placed);
            }
            inner.hosts[i].promoted = true;
            inner.hosts[i].reason =
                "promoted from standby: no ready host had room for a session".into();
            inner.hosts[i].state_since_ms = now_ms();
            inner.slots[i].state = HostState::Ready;
            let host = &inner.hosts[i];
            (
                placed,
                self.infos[host.driver].name.clone(),
                host.reason.clone(),
            )
        };
        self.counters.promotions.fetch_add(1, Ordering::Relaxed);
        self.record(
            &placed.host,
            &driver,
            Some(HostState::Standby),
            Some(HostState::Ready),
            &reason,
        );
        Ok(placed)
    }

    fn reserve(inner: &mut Inner, i: usize, session: &str, resources: Resources) -> Placed {
        let slot = &mut inner.slots[i];
        slot.allocated = slot.allocated.saturating_add(resources);
        let host = &mut inner.hosts[i];
        host.sessions += 1;
        let placed = Placed {
            host: host.report.id.clone(),
            sidecar: host.sidecar.clone(),
        };
        if let Some((old_host, old)) = inner
            .reservations
            .insert(session.to_owned(), (placed.host.clone(), resources))
        {
            // A session is reserved once: a second reservation replaces the first.
            Self::unreserve(inner, &old_host, old);
        }
        placed
    }

    fn unreserve(inner: &mut Inner, host: &str, resources: Resources) {
        if let Some(i) = inner.index(host) {
            let slot = &mut inner.slots[i];
            slot.allocated = slot.allocated.saturating_sub(resources);
            let host = &mut inner.hosts[i];
            host.sessions = host.sessions.saturating_sub(1);
            if host.sessions == 0 {
                host.idle_since = Instant::now();
            }
        }
    }

    /// Gives back what a session reserved (it ended, or its sidecar refused to open it).
    pub fn release_session(&self, session: &str) {
        {
            let mut inner = self.lock();
            let Some((host, resources)) = inner.reservations.remove(session) else {
                return;
            };
            Self::unreserve(&mut inner, &host, resources);
        }
        self.changed.notify_waiters();
    }

    /// Reserves an open session again on the host it runs on (after a restart). False when
    /// no such host is known.
    pub fn restore_session(&self, session: &str, host: &str, resources: Resources) -> bool {
        let mut inner = self.lock();
        let Some(i) = inner.index(host) else {
            return false;
        };
        Self::reserve(&mut inner, i, session, resources);
        true
    }

    /// The sidecar of a host.
    pub fn sidecar(&self, host: &str) -> Option<Arc<dyn Sidecar>> {
        let inner = self.lock();
        inner.index(host).map(|i| inner.hosts[i].sidecar.clone())
    }

    /// The host a session's reservation is on.
    pub fn host_of(&self, session: &str) -> Option<String> {
        self.lock()
            .reservations
            .get(session)
            .map(|(h, _)| h.clone())
    }

    /// Drains (or undrains) a host for an admin: it keeps its sessions and takes no new
    /// ones until undrained.
    pub fn drain(&self, host: &str, drain: bool) -> Option<HostView> {
        {
            let mut inner = self.lock();
            let i = inner.index(host)?;
            inner.hosts[i].drained = drain;
            if drain {
                inner.drained.insert(host.to_owned());
            } else {
                inner.drained.remove(host);
            }
        }
        self.update_states();
        self.host(host)
    }

    pub fn hosts(&self) -> Vec<HostView> {
        let inner = self.lock();
        let mut views: Vec<HostView> = (0..inner.hosts.len())
            .map(|i| self.view(&inner, i))
            .collect();
        views.sort_by(|a, b| a.id.cmp(&b.id));
        views
    }

    pub fn host(&self, id: &str) -> Option<HostView> {
        let inner = self.lock();
        inner.index(id).map(|i| self.view(&inner, i))
    }

    fn view(&self, inner: &Inner, i: usize) -> HostView {
        let (host, slot) = (&inner.hosts[i], &inner.slots[i]);
        HostView {
            id: host.report.id.clone(),
            driver: self.infos[host.driver].name.clone(),
            endpoint: Some(host.report.endpoint.clone()),
            state: slot.state,
            reason: host.reason.clone(),
            state_since_ms: host.state_since_ms,
            drained: host.drained,
            labels: host.report.labels.clone(),
            capacity: host.capacity,
            allocatable: host.capacity.map(|_| slot.room()),
            allocated: slot.allocated,
            sessions: host.sessions,
            max_session_timeout_ms: host.report.max_session_timeout_ms,
            metrics: Some(host.metrics.clone()),
        }
    }

    /// Whether a ready host (or a standby one) has room for `demand` now, and which, without
    /// reserving anything: the preflight's capacity check.
    pub fn would_place(&self, demand: &Demand) -> Result<(String, bool), NoFit> {
        let inner = self.lock();
        self.pick(&inner, demand)
            .map(|(i, standby)| (inner.id(i).to_owned(), standby))
    }

    /// The host `demand` goes to: the best ready one, else (unless passive) the best standby
    /// one, which is then to be promoted (`true`). The reasons are the ready hosts'.
    fn pick(&self, inner: &Inner, demand: &Demand) -> Result<(usize, bool), NoFit> {
        let strategy = self.config.strategy;
        let query = inner.query(demand);
        match choose(&inner.slots, &query, HostState::Ready, strategy) {
            Ok(i) => Ok((i, false)),
            Err(no_fit) if demand.passive => Err(no_fit),
            Err(no_fit) => choose(&inner.slots, &query, HostState::Standby, strategy)
                .map(|i| (i, true))
                .map_err(|_| no_fit),
        }
    }

    pub fn figures(&self) -> RegistryFigures {
        let inner = self.lock();
        let mut figures = RegistryFigures {
            by_state: HostState::ALL.iter().map(|s| (*s, 0)).collect(),
            ..Default::default()
        };
        for (host, slot) in inner.hosts.iter().zip(&inner.slots) {
            if let Some(count) = figures.by_state.iter_mut().find(|(s, _)| *s == slot.state) {
                count.1 += 1;
            }
            if slot.state == HostState::Ready
                && let Some(capacity) = host.capacity
            {
                figures.capacity = figures.capacity.saturating_add(capacity);
                figures.allocatable = figures.allocatable.saturating_add(slot.room());
            }
            figures.allocated = figures.allocated.saturating_add(slot.allocated);
        }
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        figures.state_changes = read(&self.counters.changes);
        figures.promotions = read(&self.counters.promotions);
        figures.provisions = read(&self.counters.provisions);
        figures.provision_failures = read(&self.counters.provision_failures);
        figures.releases = read(&self.counters.releases);
        figures.no_capacity = read(&self.counters.no_capacity);
        figures
    }
}

/// A host's state from its report, its sidecar's health and the admins, with why.
fn effective_state(host: &Host, scaling: Option<&Scaling>) -> (HostState, String) {
    if host.releasing {
        return (HostState::Draining, "being released by its driver".into());
    }
    if !host.sidecar.has_answered() {
        // Coming up: brought up by a provision call or said to be by its driver, for at most
        // the driver's provision timeout (then it is no capacity, and released).
        let coming = host.provisioned_at.is_some() || host.report.state == HostState::Provisioning;
        let waiting =
            coming && scaling.is_some_and(|s| host.seen_at.elapsed() <= s.provision_timeout);
        return if waiting {
            (
                HostState::Provisioning,
                "brought up by its driver; its sidecar does not answer yet".into(),
            )
        } else {
            (
                HostState::Unhealthy,
                "its sidecar has not answered a health check yet".into(),
            )
        };
    }
    match host.sidecar.state() {
        SidecarState::Lost => {
            return (
                HostState::Unhealthy,
                "its sidecar stopped answering health checks".into(),
            );
        }
        SidecarState::Draining => {
            return (
                HostState::Draining,
                "its sidecar is draining (stopping)".into(),
            );
        }
        SidecarState::Ready => {}
    }
    if host.drained {
        return (HostState::Draining, "drained by an admin".into());
    }
    match host.report.state {
        HostState::Unhealthy => (
            HostState::Unhealthy,
            "its driver reports it unhealthy".into(),
        ),
        HostState::Draining => (HostState::Draining, "its driver drains it".into()),
        HostState::Standby if host.promoted => (HostState::Ready, host.reason.clone()),
        HostState::Standby => (HostState::Standby, "held in reserve by its driver".into()),
        HostState::Ready | HostState::Provisioning => {
            (HostState::Ready, "answers its health checks".into())
        }
    }
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
