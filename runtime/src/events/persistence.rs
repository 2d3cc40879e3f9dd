//! Where events are kept durably.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Mutex, PoisonError};

use super::Event;

/// Durable storage of events, implemented by the SQLite store and by
/// [`MemoryPersistence`].
///
/// The hub calls `persist` while it holds the session's lock, once per event,
/// in sequence order. It relies on **read-your-writes**: as soon as `persist`
/// returned, `load_after` and `last_seq` must account for the event, even if
/// the actual write is queued and batched (serve queued events from the
/// queue, or flush before reading). Otherwise a catching-up subscriber could
/// see a false gap, and a hub that reloads a session's position could reuse a
/// sequence number.
pub trait EventPersistence: Send + Sync + 'static {
    /// Keeps `event`. Must not block for long: the publisher waits for it.
    fn persist(&self, session: &str, event: &Event);
    /// At most `limit` events of `session` with `seq > after`, ascending.
    fn load_after(&self, session: &str, after: u64, limit: usize) -> Vec<Event>;
    /// The highest sequence number kept for `session`, 0 if none.
    fn last_seq(&self, session: &str) -> u64;
}

/// Events in memory, for tests and for running without a store. Optionally
/// keeps only the most recent `capacity` events per session, so memory stays
/// bounded (older events are then reported to subscribers as a gap).
#[derive(Debug, Default)]
pub struct MemoryPersistence {
    capacity: Option<usize>,
    sessions: Mutex<HashMap<String, Kept>>,
}

#[derive(Debug, Default)]
struct Kept {
    events: BTreeMap<u64, Event>,
    /// Survives trimming, so numbering continues even when all is forgotten.
    last_seq: u64,
}

impl MemoryPersistence {
    /// Keeps every event.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps the most recent `capacity` events of each session.
    pub fn bounded(capacity: usize) -> Self {
        Self {
            capacity: Some(capacity),
            sessions: Mutex::default(),
        }
    }

    /// Forgets everything about `session`.
    pub fn remove_session(&self, session: &str) {
        self.lock().remove(session);
    }

    /// How many events of `session` are kept.
    pub fn count(&self, session: &str) -> usize {
        self.lock().get(session).map_or(0, |kept| kept.events.len())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Kept>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl EventPersistence for MemoryPersistence {
    fn persist(&self, session: &str, event: &Event) {
        let mut sessions = self.lock();
        let kept = match sessions.get_mut(session) {
            Some(kept) => kept,
            None => sessions.entry(session.to_owned()).or_default(),
        };
        kept.last_seq = kept.last_seq.max(event.seq);
        kept.events.insert(event.seq, event.clone());
        if let Some(capacity) = self.capacity {
            while kept.events.len() > capacity {
                kept.events.pop_first();
            }
        }
    }

    fn load_after(&self, session: &str, after: u64, limit: usize) -> Vec<Event> {
        let sessions = self.lock();
        let Some(kept) = sessions.get(session) else {
            return Vec::new();
        };
        kept.events
            .range((Bound::Excluded(after), Bound::Unbounded))
            .take(limit)
            .map(|(_, event)| event.clone())
            .collect()
    }

    fn last_seq(&self, session: &str) -> u64 {
        self.lock().get(session).map_or(0, |kept| kept.last_seq)
    }
}
