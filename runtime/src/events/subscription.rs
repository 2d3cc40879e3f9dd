//! The stream one subscriber reads: backlog, then live events, with catch-up
//! after lagging.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use futures_util::Stream;
use tokio::task::JoinHandle;

use super::hub::{HubInner, Session};
use super::inbox::Inbox;
use super::{Delivery, Event};

/// What a subscriber must read before its inbox (see `SessionState::backlog`).
pub(super) struct Backlog {
    /// `from..=to` (with `from` the subscriber's `next`) is older than the
    /// ring buffer: only the persistence may still hold it.
    pub(super) stored: Option<(u64, u64)>,
    /// The ring buffer's events from `next` on.
    pub(super) ring: VecDeque<Arc<Event>>,
}

/// The events of one session, from a position on: a
/// [`Stream`] of [`Delivery`] items. Ends after the last event once the
/// session is closed. Dropping it unregisters the subscriber.
///
/// Order of reading: events loaded from the persistence (in pages of
/// `replay_limit`, on the blocking pool), then the copy of the ring buffer,
/// then the inbox. When the inbox lagged, the subscription drains it, then
/// copies the ring again from where it is (`next`), loading from the
/// persistence whatever already left the ring, and continues live.
pub struct Subscription {
    hub: Arc<HubInner>,
    session: Arc<Session>,
    inbox: Arc<Inbox>,
    slot: usize,
    /// The sequence number owed next: everything below it was delivered.
    next: u64,
    /// Last sequence number still to be read from the persistence.
    stored_to: Option<u64>,
    /// The persistence has nothing more in `next..=stored_to`.
    stored_exhausted: bool,
    /// A page being loaded, with the number of events asked for.
    loading: Option<(JoinHandle<Vec<Event>>, usize)>,
    loaded: VecDeque<Event>,
    ring: VecDeque<Arc<Event>>,
    /// An event held back while the gap before it is delivered.
    pending: Option<Delivery>,
    done: bool,
}

impl Subscription {
    pub(super) fn new(
        hub: Arc<HubInner>,
        session: Arc<Session>,
        inbox: Arc<Inbox>,
        slot: usize,
        next: u64,
        backlog: Backlog,
    ) -> Self {
        let mut subscription = Self {
            hub,
            session,
            inbox,
            slot,
            next,
            stored_to: None,
            stored_exhausted: false,
            loading: None,
            loaded: VecDeque::new(),
            ring: VecDeque::new(),
            pending: None,
            done: false,
        };
        subscription.set_backlog(backlog);
        subscription
    }

    /// The session this subscription reads.
    pub fn session(&self) -> &str {
        &self.session.id
    }

    fn set_backlog(&mut self, backlog: Backlog) {
        debug_assert!(backlog.stored.is_none_or(|(from, _)| from == self.next));
        self.stored_to = backlog.stored.map(|(_, to)| to);
        self.stored_exhausted = false;
        self.loaded.clear();
        self.ring = backlog.ring;
    }

    /// Called when the inbox is drained and lagged: the same
    /// subscribe-then-snapshot as `EventHub::subscribe`, with clearing the
    /// flag (under the session lock) as the registration.
    fn catch_up(&mut self) {
        let state = self.session.lock();
        self.inbox.lock().lagged = false;
        let backlog = state.backlog(self.next);
        drop(state);
        self.set_backlog(backlog);
    }

    /// Takes the event numbered `seq` if it is owed, reporting a gap first if
    /// it comes after a hole.
    fn accept(&mut self, seq: u64, event: impl FnOnce() -> Event) -> Option<Delivery> {
        if seq < self.next {
            return None;
        }
        let delivery = Delivery::Event(event());
        let from = self.next;
        self.next = seq.saturating_add(1);
        if seq > from {
            self.pending = Some(delivery);
            return Some(Delivery::Gap { from, to: seq - 1 });
        }
        Some(delivery)
    }

    /// Loads the next page of `next..=to` from the persistence.
    fn poll_load(&mut self, cx: &mut Context<'_>, to: u64) -> Poll<()> {
        if self.loading.is_none() {
            let after = self.next - 1;
            let want = usize::try_from(to - after)
                .unwrap_or(usize::MAX)
                .min(self.hub.config.replay_limit.max(1));
            let persistence = self.hub.persistence.clone();
            let session = self.session.id.clone();
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    let load = runtime
                        .spawn_blocking(move || persistence.load_after(&session, after, want));
                    self.loading = Some((load, want));
                }
                Err(_) => {
                    let events = persistence.load_after(&session, after, want);
                    self.take_page(events, want, to);
                    return Poll::Ready(());
                }
            }
        }
        let (load, want) = self.loading.as_mut().expect("a load is under way");
        let want = *want;
        let result = ready!(Pin::new(load).poll(cx));
        self.loading = None;
        let events = result.unwrap_or_else(|err| {
            tracing::error!(session = %self.session.id, error = %err, "loading events failed");
            Vec::new()
        });
        self.take_page(events, want, to);
        Poll::Ready(())
    }

    fn take_page(&mut self, events: Vec<Event>, want: usize, to: u64) {
        let returned = events.len();
        let next = self.next;
        self.loaded.extend(
            events
                .into_iter()
                .filter(|event| (next..=to).contains(&event.seq)),
        );
        // Fewer than asked, or the range's end reached: nothing more to load.
        self.stored_exhausted =
            returned < want || self.loaded.back().is_none_or(|event| event.seq >= to);
    }
}

impl Stream for Subscription {
    type Item = Delivery;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            if let Some(delivery) = this.pending.take() {
                return Poll::Ready(Some(delivery));
            }
            // 1. What only the persistence holds.
            if let Some(to) = this.stored_to {
                if let Some(event) = this.loaded.pop_front() {
                    if let Some(delivery) = this.accept(event.seq, || event) {
                        return Poll::Ready(Some(delivery));
                    }
                    continue;
                }
                if this.next > to {
                    this.stored_to = None;
                    continue;
                }
                if this.stored_exhausted {
                    let from = this.next;
                    this.next = to + 1;
                    this.stored_to = None;
                    return Poll::Ready(Some(Delivery::Gap { from, to }));
                }
                ready!(this.poll_load(cx, to));
                continue;
            }
            // 2. The copy of the ring buffer.
            if let Some(event) = this.ring.pop_front() {
                if let Some(delivery) = this.accept(event.seq, || Arc::unwrap_or_clone(event)) {
                    return Poll::Ready(Some(delivery));
                }
                continue;
            }
            // 3. The inbox.
            let mut inbox = this.inbox.lock();
            if let Some(event) = inbox.queue.pop_front() {
                drop(inbox);
                if let Some(delivery) = this.accept(event.seq, || Arc::unwrap_or_clone(event)) {
                    return Poll::Ready(Some(delivery));
                }
                continue;
            }
            if inbox.lagged {
                drop(inbox);
                this.catch_up();
                continue;
            }
            if inbox.closed {
                this.done = true;
                return Poll::Ready(None);
            }
            inbox.register(cx.waker());
            return Poll::Pending;
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unregister(&self.session, self.slot);
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("session", &self.session.id)
            .field("next", &self.next)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}
