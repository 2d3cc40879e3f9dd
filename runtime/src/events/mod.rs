//! The per-session event hub behind the SSE gateway.
//!
//! Every session has its own strictly increasing sequence of events. The
//! [`EventHub`] numbers each published event, keeps the most recent ones in a
//! ring buffer, hands every one to an [`EventPersistence`] (the SQLite store,
//! or [`MemoryPersistence`]), and fans it out to the session's live
//! [`Subscription`]s without ever waiting for them.
//!
//! A subscription starts from a position (`after`, the SSE `Last-Event-ID`)
//! and yields [`Delivery`] items: the backlog first (ring buffer, then the
//! store for anything older), then live events, each sequence number exactly
//! once and in order. If some events after the position exist nowhere any
//! more, a single [`Delivery::Gap`] names the lost range, precisely.
//!
//! - `hub`: numbering, the ring buffer, fan-out, subscribe-then-snapshot;
//! - `inbox`: the bounded queue of one subscriber;
//! - `subscription`: the stream a subscriber reads, including catch-up;
//! - `persistence`: where events are kept durably.

mod hub;
mod inbox;
mod persistence;
mod subscription;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use serde::Serialize;

pub use hub::{EventHub, HubConfig};
pub use persistence::{EventPersistence, MemoryPersistence};
pub use subscription::Subscription;

/// The SSE event name of a [`Delivery::Gap`].
pub const GAP_EVENT: &str = crate::vocabulary::EventName::Gap.as_str();

/// One event of one session.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Per-session sequence number: strictly increasing from 1, never reused.
    pub seq: u64,
    /// The event name (`task.started`, `tool.log`, ...).
    pub name: String,
    /// The payload as JSON text: serialized once when published, then shared by the store
    /// and every subscriber that receives the event.
    #[serde(serialize_with = "serialize_raw")]
    pub data: Arc<str>,
    /// When the hub numbered it, in milliseconds since the Unix epoch.
    pub at_ms: i64,
}

fn serialize_raw<S: serde::Serializer>(data: &Arc<str>, serializer: S) -> Result<S::Ok, S::Error> {
    let raw: &serde_json::value::RawValue =
        serde_json::from_str(data).map_err(serde::ser::Error::custom)?;
    raw.serialize(serializer)
}

/// What a [`Subscription`] yields.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// The next event, in sequence order.
    Event(Event),
    /// Events `from..=to` existed but are no longer kept anywhere; the next
    /// delivery continues at `to + 1`.
    Gap { from: u64, to: u64 },
}

impl Delivery {
    /// The SSE `id:`: the event's sequence number, or the last lost one for a
    /// gap, so that a client resuming from it neither misses nor repeats.
    pub fn id(&self) -> u64 {
        match self {
            Self::Event(event) => event.seq,
            Self::Gap { to, .. } => *to,
        }
    }

    /// The SSE `event:`: the event's name, or [`GAP_EVENT`].
    pub fn name(&self) -> &str {
        match self {
            Self::Event(event) => &event.name,
            Self::Gap { .. } => GAP_EVENT,
        }
    }

    /// The SSE `data:` payload as JSON text: the event's data, or `{"from":..,"to":..}`.
    pub fn data(&self) -> Arc<str> {
        match self {
            Self::Event(event) => event.data.clone(),
            Self::Gap { from, to } => format!(r#"{{"from":{from},"to":{to}}}"#).into(),
        }
    }
}

/// Why a subscription was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    /// The hub already serves `HubConfig::max_subscribers` subscriptions.
    #[error("too many event subscribers")]
    TooManySubscribers,
    /// The session is closed and nothing after the requested position is left.
    #[error("the session is closed and has no further events")]
    Closed,
}
