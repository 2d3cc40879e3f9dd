//! Each session's event stream from its sidecar: read, handed to the tasks it belongs to,
//! resumed after a break, and acknowledged once stored.

use super::{ACK_EVERY, CALL_TIMEOUT, Inner, RELAY_SILENCE, error_chain};
use crate::sidecar::SidecarError;
use crate::sidecar::relay::{Line, Lines, Relay, frame_head};
use crate::sidecar::server::Ack;
use crate::sidecar::wire::Frame;
use bytes::Bytes;
use http::Method;
use http_body_util::BodyExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

impl Inner {
    pub(super) fn relay(&self, session: &str) -> Option<Arc<Relay>> {
        self.relays
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(session)
            .cloned()
    }

    /// Reads the session's event stream from the sidecar once, until it ends or breaks.
    async fn relay_once(&self, relay: &Relay) -> Result<(), SidecarError> {
        let path = format!(
            "/v1/sidecar/sessions/{}/events?after={}",
            relay.session,
            relay.cursor()
        );
        let request = self.request(Method::GET, &path, Bytes::new(), "application/json");
        let response = tokio::time::timeout(CALL_TIMEOUT, self.streams.request(request))
            .await
            .map_err(|_| self.unreachable("the event stream did not open"))?
            .map_err(|e| self.unreachable(error_chain(&e)))?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return Err(self.problem(status, &body));
        }
        let mut body = response.into_body();
        let mut lines = Lines::default();
        loop {
            let frame = tokio::select! {
                _ = relay.stop.cancelled() => return Ok(()),
                frame = tokio::time::timeout(RELAY_SILENCE, body.frame()) => frame,
            };
            let chunk = match frame {
                Err(_) => return Err(self.unreachable("the event stream went silent")),
                Ok(None) => return Ok(()),
                Ok(Some(Err(e))) => return Err(self.unreachable(e)),
                Ok(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => data,
                    Err(_) => continue,
                },
            };
            for line in lines.push(&chunk) {
                let (line, error) = match line {
                    Line::Whole(line) => match serde_json::from_slice::<Frame>(&line) {
                        Ok(frame) => {
                            relay.dispatch(frame);
                            continue;
                        }
                        Err(e) => (line, format!("a frame of the event stream: {e}")),
                    },
                    Line::Oversized { head } => (
                        head,
                        format!(
                            "a frame of the event stream is over {} bytes",
                            crate::sidecar::relay::MAX_FRAME_BYTES
                        ),
                    ),
                };
                // Frames come numbered one after another: one that cannot be read is the
                // next, and its task (when it says which) fails; the stream goes on.
                let (seq, task) = frame_head(&line);
                let seq = seq.unwrap_or_else(|| relay.cursor() + 1);
                let error = SidecarError::Protocol(error);
                tracing::warn!(sidecar = %self.endpoint.id, session = %relay.session, seq, %error, "unreadable frame skipped; its task fails");
                relay.skip(seq, task.as_deref().unwrap_or_default(), error);
            }
        }
    }
}

pub(super) async fn relay_loop(inner: std::sync::Weak<Inner>, relay: Arc<Relay>) {
    let mut backoff = Duration::from_millis(50);
    while !relay.stop.is_cancelled() {
        let Some(this) = inner.upgrade() else { return };
        match this.relay_once(&relay).await {
            Ok(()) => backoff = Duration::from_millis(50),
            Err(SidecarError::UnknownSession(_)) => {
                this.lose_session(&relay);
                return;
            }
            Err(error) => {
                tracing::debug!(sidecar = %this.endpoint.id, session = %relay.session, %error, "relay connection broke; resuming");
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
        drop(this);
        tokio::select! {
            _ = relay.stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
    }
}

/// Tells the sidecar which frames are stored, once the store has them.
pub(super) async fn ack_loop(inner: std::sync::Weak<Inner>) {
    loop {
        tokio::time::sleep(ACK_EVERY).await;
        let Some(this) = inner.upgrade() else { return };
        let pending: Vec<(Arc<Relay>, u64)> = this
            .relays
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|r| (r.clone(), r.cursor()))
            .filter(|(r, cursor)| *cursor > r.acked.load(Ordering::SeqCst))
            .collect();
        if pending.is_empty() {
            continue;
        }
        let store = this.context.store.clone();
        if !matches!(
            tokio::task::spawn_blocking(move || store.flush()).await,
            Ok(Ok(()))
        ) {
            continue;
        }
        let ack = Ack {
            sessions: pending
                .iter()
                .map(|(r, c)| (r.session.clone(), *c))
                .collect(),
        };
        let body = Bytes::from(serde_json::to_vec(&ack).unwrap_or_default());
        if this
            .call(
                Method::POST,
                "/v1/sidecar/ack",
                body,
                "application/json",
                CALL_TIMEOUT,
            )
            .await
            .is_ok()
        {
            for (relay, cursor) in pending {
                relay.acked.fetch_max(cursor, Ordering::SeqCst);
            }
        }
    }
}
