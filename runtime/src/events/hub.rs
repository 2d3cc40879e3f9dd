//! Numbering, the ring buffer, fan-out, and subscribe-then-snapshot.
//!
//! # Why nothing is missed or doubled
//!
//! Each session has one mutex. `publish` holds it while it (1) takes the next
//! sequence number, (2) hands the event to the persistence, (3) appends it to
//! the ring buffer and (4) offers it to every registered inbox. `subscribe`
//! holds the same mutex while it registers the new inbox *and* copies the
//! part of the ring buffer after the requested position, noting `last`, the
//! highest sequence number published so far. So every event falls on exactly
//! one side of the registration:
//!
//! - `seq <= last`: published before the inbox existed, so it is not in the
//!   inbox; it is in the ring copy, or, if it already left the ring, in the
//!   persistence (persisted before it entered the ring, and the persistence
//!   reads its own writes). The subscription loads those older ones from the
//!   persistence later, outside the lock: that read happens *after*
//!   registration, so anything it cannot see yet is newer than the ring's
//!   oldest event and therefore in the ring copy or in the inbox.
//! - `seq > last`: published after the registration, so it is offered to the
//!   inbox, in order, because offers happen under the session lock.
//!
//! The subscription delivers persistence, then ring copy, then inbox, and
//! also tracks the next sequence number it owes (`next`), dropping anything
//! below it and reporting anything above it as a gap: duplicates and holes
//! are impossible by construction, and the cursor makes that locally
//! checkable.
//!
//! A full inbox marks itself *lagged* and takes nothing more. When the
//! subscription has drained it, it takes the session lock, clears the flag
//! and copies the ring again from `next`: the same argument applies, the
//! "registration" being the moment the flag is cleared.
//!
//! Lock order: the sessions map, then a session, then an inbox.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use super::inbox::{Inbox, Offer};
use super::subscription::{Backlog, Subscription};
use super::{Event, EventPersistence, HubError};

/// Bounds of an [`EventHub`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubConfig {
    /// Events kept in memory per session (default 1024).
    pub buffer: usize,
    /// Events queued per subscriber before it is marked lagged (default 256).
    pub subscriber_queue: usize,
    /// Live subscriptions per hub, all sessions together (default 20 000).
    pub max_subscribers: usize,
    /// Events loaded from the persistence at a time by one catching-up
    /// subscription (default 10 000). Larger backlogs are loaded in pages.
    pub replay_limit: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            buffer: 1024,
            subscriber_queue: 256,
            max_subscribers: 20_000,
            replay_limit: 10_000,
        }
    }
}

/// The per-session event hub. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct EventHub {
    inner: Arc<HubInner>,
}

pub(super) struct HubInner {
    pub(super) persistence: Arc<dyn EventPersistence>,
    pub(super) config: HubConfig,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    subscribers: AtomicUsize,
    dropped: AtomicU64,
}

pub(super) struct Session {
    pub(super) id: Arc<str>,
    state: Mutex<SessionState>,
}

pub(super) struct SessionState {
    /// The highest sequence number assigned so far.
    last_seq: u64,
    /// The most recent events, contiguous, ending at `last_seq`.
    ring: VecDeque<Arc<Event>>,
    /// Registered inboxes; `None` slots are reused through `free`.
    slots: Vec<Option<Arc<Inbox>>>,
    free: Vec<usize>,
    live: usize,
    closed: bool,
    /// `forget` was called while someone still listened.
    forget_when_idle: bool,
    /// Removed from the sessions map: whoever still holds this entry must
    /// look the session up again (see `HubInner::with_session`).
    forgotten: bool,
}

impl std::fmt::Debug for EventHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHub")
            .field("config", &self.inner.config)
            .field("subscribers", &self.subscribers())
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl EventHub {
    pub fn new(persistence: Arc<dyn EventPersistence>, config: HubConfig) -> Self {
        Self {
            inner: Arc::new(HubInner {
                persistence,
                config,
                sessions: Mutex::default(),
                subscribers: AtomicUsize::new(0),
                dropped: AtomicU64::new(0),
            }),
        }
    }

    /// Numbers the event (continuing from the persistence's `last_seq` the
    /// first time the hub sees the session, so numbers are never reused
    /// across restarts), persists it, keeps it in the ring buffer and offers
    /// it to every subscriber without waiting for any. Returns its sequence
    /// number. Publishing to a closed session still numbers and keeps the
    /// event; subscribers that have not ended yet receive it.
    pub fn publish(
        &self,
        session: &str,
        name: crate::vocabulary::EventName,
        data: serde_json::Value,
    ) -> u64 {
        let mut dropped = 0u64;
        let seq = self.inner.with_session(session, |_, state| {
            state.last_seq += 1;
            let event = Arc::new(Event {
                seq: state.last_seq,
                name: name.as_str().to_owned(),
                data: data.to_string().into(),
                at_ms: now_ms(),
            });
            self.inner.persistence.persist(session, &event);
            let buffer = self.inner.config.buffer;
            if buffer > 0 {
                if state.ring.len() >= buffer {
                    state.ring.pop_front();
                }
                state.ring.push_back(event.clone());
            }
            for inbox in state.slots.iter().flatten() {
                if inbox.offer(&event) == Offer::Dropped {
                    dropped += 1;
                }
            }
            event.seq
        });
        if dropped > 0 {
            self.inner.dropped.fetch_add(dropped, Ordering::Relaxed);
        }
        seq
    }

    /// Delivers every event with `seq > after` (backlog, then live), or only
    /// new ones if `after` is `None`. See the module documentation for why
    /// nothing is missed or doubled.
    ///
    /// Errors: [`HubError::Closed`] if the session is closed and nothing
    /// after `after` is left to deliver; [`HubError::TooManySubscribers`] at
    /// `max_subscribers`. On a closed session with a backlog, the stream
    /// delivers the backlog and ends.
    pub fn subscribe(&self, session: &str, after: Option<u64>) -> Result<Subscription, HubError> {
        let (entry, next, backlog, inbox, slot) =
            self.inner.with_session(session, |entry, state| {
                let next = match after {
                    None => state.last_seq + 1,
                    Some(after) => after.saturating_add(1),
                };
                if state.closed && next > state.last_seq {
                    return Err(HubError::Closed);
                }
                let max = self.inner.config.max_subscribers;
                self.inner
                    .subscribers
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                        (n < max).then_some(n + 1)
                    })
                    .map_err(|_| HubError::TooManySubscribers)?;
                let inbox = Arc::new(Inbox::new(self.inner.config.subscriber_queue, state.closed));
                let slot = state.register(inbox.clone());
                Ok((entry.clone(), next, state.backlog(next), inbox, slot))
            })?;
        Ok(Subscription::new(
            self.inner.clone(),
            entry,
            inbox,
            slot,
            next,
            backlog,
        ))
    }

    /// Marks the session closed: subscribers receive everything published so
    /// far (publish `session.closed` first), then their streams end. Also
    /// works for a session the hub has not seen since a restart.
    pub fn close(&self, session: &str) {
        self.inner.with_session(session, |_, state| {
            state.closed = true;
            for inbox in state.slots.iter().flatten() {
                inbox.close();
            }
        });
    }

    pub fn is_closed(&self, session: &str) -> bool {
        self.inner
            .find(session)
            .is_some_and(|entry| entry.lock().closed)
    }

    /// The highest sequence number of the session, 0 if none (asks the
    /// persistence for a session the hub has not seen).
    pub fn last_seq(&self, session: &str) -> u64 {
        match self.inner.find(session) {
            Some(entry) => entry.lock().last_seq,
            None => self.inner.persistence.last_seq(session),
        }
    }

    /// The highest sequence number of the session if the hub holds the session in memory;
    /// `None` (and no read of the persistence) when it does not.
    pub fn known_last_seq(&self, session: &str) -> Option<u64> {
        self.inner.find(session).map(|entry| entry.lock().last_seq)
    }

    /// Live subscriptions, all sessions together.
    pub fn subscribers(&self) -> usize {
        self.inner.subscribers.load(Ordering::Relaxed)
    }

    /// Events that could not be queued for a lagging subscriber (which then
    /// caught up from the ring buffer or the persistence instead).
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Frees the memory of a closed session: now if nobody listens, else
    /// when its last subscription is dropped. Does nothing to an open
    /// session. Afterwards the session is unknown to the hub: a later call
    /// starts afresh from the persistence (and is open again until `close`).
    pub fn forget(&self, session: &str) {
        let mut sessions = self.inner.lock_sessions();
        let Some(entry) = sessions.get(session) else {
            return;
        };
        let mut state = entry.lock();
        if !state.closed {
            tracing::debug!(session, "not forgetting an open session");
            return;
        }
        if state.live == 0 {
            state.forgotten = true;
            drop(state);
            sessions.remove(session);
        } else {
            state.forget_when_idle = true;
        }
    }
}

impl HubInner {
    fn lock_sessions(&self) -> MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn find(&self, session: &str) -> Option<Arc<Session>> {
        self.lock_sessions().get(session).cloned()
    }

    /// The session's entry, created on first use with the persistence's last
    /// sequence number (read outside any lock: nothing can be published to a
    /// session before its entry exists, so a racing creator reads the same).
    fn session(&self, session: &str) -> Arc<Session> {
        if let Some(entry) = self.find(session) {
            return entry;
        }
        let last_seq = self.persistence.last_seq(session);
        self.lock_sessions()
            .entry(session.to_owned())
            .or_insert_with(|| Arc::new(Session::new(session, last_seq)))
            .clone()
    }

    /// Runs `f` under the lock of the session's current entry. An entry
    /// removed by `forget` is marked under its lock before it leaves the map,
    /// so a caller that fetched it just before is sent to the new entry, and
    /// a new entry, created only after the removal, reads a `last_seq` that
    /// includes every event published through the old one.
    fn with_session<R>(
        &self,
        session: &str,
        f: impl FnOnce(&Arc<Session>, &mut SessionState) -> R,
    ) -> R {
        loop {
            let entry = self.session(session);
            let mut state = entry.lock();
            if !state.forgotten {
                return f(&entry, &mut state);
            }
        }
    }

    /// Called when a subscription is dropped.
    pub(super) fn unregister(&self, entry: &Arc<Session>, slot: usize) {
        let idle = {
            let mut state = entry.lock();
            state.unregister(slot);
            state.live == 0 && state.forget_when_idle
        };
        self.subscribers.fetch_sub(1, Ordering::AcqRel);
        if idle {
            let mut sessions = self.lock_sessions();
            if let Some(current) = sessions.get(&*entry.id) {
                let mut state = current.lock();
                if Arc::ptr_eq(current, entry) && state.live == 0 && state.forget_when_idle {
                    state.forgotten = true;
                    drop(state);
                    sessions.remove(&*entry.id);
                }
            }
        }
    }
}

impl Session {
    fn new(id: &str, last_seq: u64) -> Self {
        Self {
            id: Arc::from(id),
            state: Mutex::new(SessionState {
                last_seq,
                ring: VecDeque::new(),
                slots: Vec::new(),
                free: Vec::new(),
                live: 0,
                closed: false,
                forget_when_idle: false,
                forgotten: false,
            }),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, SessionState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl SessionState {
    fn register(&mut self, inbox: Arc<Inbox>) -> usize {
        self.live += 1;
        match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(inbox);
                slot
            }
            None => {
                self.slots.push(Some(inbox));
                self.slots.len() - 1
            }
        }
    }

    fn unregister(&mut self, slot: usize) {
        if self.slots.get_mut(slot).and_then(Option::take).is_none() {
            return;
        }
        self.live -= 1;
        if self.live == 0 {
            // Nobody listens: do not make publishers walk empty slots.
            self.slots = Vec::new();
            self.free = Vec::new();
        } else {
            self.free.push(slot);
        }
    }

    /// What a subscriber that owes `next` must read before its inbox: the
    /// ring's events from `next` on, and the range before the ring's oldest
    /// event that only the persistence may still hold.
    pub(super) fn backlog(&self, next: u64) -> Backlog {
        let ring_first = self
            .ring
            .front()
            .map_or(self.last_seq + 1, |event| event.seq);
        let stored = (next < ring_first).then(|| (next, ring_first - 1));
        let skip = usize::try_from(next.saturating_sub(ring_first)).unwrap_or(usize::MAX);
        let ring = self
            .ring
            .range(skip.min(self.ring.len())..)
            .cloned()
            .collect();
        Backlog { stored, ring }
    }
}
