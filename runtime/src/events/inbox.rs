//! The bounded queue between the publisher and one subscriber.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;

use super::Event;

/// One subscriber's queue. The publisher only ever pushes without waiting:
/// when the queue is full it marks the inbox *lagged* and stops pushing to it
/// until the subscription has caught up by itself (see `Subscription`).
#[derive(Debug)]
pub(super) struct Inbox {
    capacity: usize,
    state: Mutex<InboxState>,
}

#[derive(Debug)]
pub(super) struct InboxState {
    pub(super) queue: VecDeque<Arc<Event>>,
    /// Events were refused since the queue was last drained; nothing is
    /// pushed until the subscription resets this under the session lock.
    pub(super) lagged: bool,
    /// The session is closed: once drained, the stream ends.
    pub(super) closed: bool,
    waker: Option<Waker>,
}

/// What the publisher did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Offer {
    Queued,
    Dropped,
}

impl Inbox {
    pub(super) fn new(capacity: usize, closed: bool) -> Self {
        Self {
            capacity: capacity.max(1),
            state: Mutex::new(InboxState {
                queue: VecDeque::new(),
                lagged: false,
                closed,
                waker: None,
            }),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, InboxState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Called by the publisher, under the session lock. Never waits for the
    /// subscriber; the only allocation is the queue growing to its capacity
    /// the first times it fills.
    pub(super) fn offer(&self, event: &Arc<Event>) -> Offer {
        let mut state = self.lock();
        if state.lagged {
            return Offer::Dropped;
        }
        let offer = if state.queue.len() >= self.capacity {
            // Wake the subscriber even though nothing was queued: it must
            // learn that it lagged once it has drained its queue.
            state.lagged = true;
            Offer::Dropped
        } else {
            state.queue.push_back(event.clone());
            Offer::Queued
        };
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        offer
    }

    /// Called under the session lock when the session closes.
    pub(super) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl InboxState {
    /// Remembers whom to wake on the next offer or close.
    pub(super) fn register(&mut self, waker: &Waker) {
        match &mut self.waker {
            Some(current) if current.will_wake(waker) => {}
            slot => *slot = Some(waker.clone()),
        }
    }
}
