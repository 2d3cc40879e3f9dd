//! Health checks: when a sidecar is lost, and what is lost with it.

use super::{CALL_TIMEOUT, Inner, Loss};
use crate::sidecar::SidecarError;
use crate::sidecar::relay::Relay;
use crate::sidecar::wire::{SidecarHealth, SidecarState};
use bytes::Bytes;
use http::Method;
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Inner {
    pub(super) async fn check_health(&self) -> Result<SidecarHealth, SidecarError> {
        // A slow answer is still an answer: a check may take what is left of the health
        // timeout, so the sidecar is lost neither early nor late.
        let since_ok = self
            .health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last_ok
            .elapsed();
        let timeout = self
            .endpoint
            .health_timeout
            .saturating_sub(since_ok)
            .clamp(Duration::from_millis(100), CALL_TIMEOUT);
        let sent = crate::sidecar::wire::wall_ms();
        let body = self
            .call(
                Method::GET,
                "/v1/sidecar/health",
                Bytes::new(),
                "application/json",
                timeout,
            )
            .await?;
        let answered = crate::sidecar::wire::wall_ms();
        let health: SidecarHealth =
            serde_json::from_slice(&body).map_err(|e| SidecarError::Protocol(e.to_string()))?;
        if health.machine.is_some() {
            self.health
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .machine
                .clone_from(&health.machine);
        }
        if health.now_ms > 0 {
            // Its clock read at about the middle of the exchange.
            let middle = sent / 2 + answered / 2;
            let offset = i64::try_from(health.now_ms).unwrap_or(i64::MAX)
                - i64::try_from(middle).unwrap_or(i64::MAX);
            self.health
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clock_offset_ms = Some(offset);
        }
        Ok(health)
    }

    /// Every session here ends: waiting tasks fail `host_lost`, the orchestrator is told.
    pub(super) fn lose_all(&self, why: &str) {
        let relays: Vec<Arc<Relay>> = self
            .relays
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, r)| r)
            .collect();
        let error = SidecarError::Lost {
            sidecar: self.endpoint.id.clone(),
            message: why.to_owned(),
        };
        tracing::error!(sidecar = %self.endpoint.id, sessions = relays.len(), why, "sidecar lost");
        for relay in &relays {
            relay.stop.cancel();
            relay.fail_all(&error);
        }
        self.orphans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(relays.iter().map(|r| r.session.clone()));
        let _ = self.context.lost.send(Loss {
            sidecar: self.endpoint.id.clone(),
            session: None,
        });
    }

    /// One session the sidecar answers it does not hold (it restarted without the
    /// orchestrator noticing, or it was told to close it): the session ends `host_lost`,
    /// its waiting tasks with it.
    pub(super) fn lose_session(&self, relay: &Relay) {
        self.relays
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&relay.session);
        let error = SidecarError::Lost {
            sidecar: self.endpoint.id.clone(),
            message: format!("it no longer holds session {}", relay.session),
        };
        tracing::error!(sidecar = %self.endpoint.id, session = %relay.session, "session lost on its sidecar");
        relay.stop.cancel();
        relay.fail_all(&error);
        let _ = self.context.lost.send(Loss {
            sidecar: self.endpoint.id.clone(),
            session: Some(relay.session.clone()),
        });
    }
}

pub(super) async fn health_loop(inner: std::sync::Weak<Inner>) {
    loop {
        let Some(this) = inner.upgrade() else { return };
        let interval = this.endpoint.health_interval;
        let checked = this.check_health().await;
        let now = Instant::now();
        let mut lost = None;
        {
            let mut health = this.health.lock().unwrap_or_else(|e| e.into_inner());
            match &checked {
                Ok(answer) => {
                    if health.boot.as_ref().is_some_and(|b| *b != answer.boot) {
                        lost = Some("the sidecar restarted: its sessions are gone".to_owned());
                    }
                    if health.state == SidecarState::Lost {
                        tracing::info!(sidecar = %this.endpoint.id, "sidecar answers");
                    }
                    health.boot = Some(answer.boot.clone());
                    health.last_ok = now;
                    health.state = answer.state;
                }
                Err(error)
                    if now.duration_since(health.last_ok) >= this.endpoint.health_timeout =>
                {
                    if health.state != SidecarState::Lost {
                        lost = Some(format!(
                            "no health answer for {} ms: {error}",
                            this.endpoint.health_timeout.as_millis()
                        ));
                    }
                    health.state = SidecarState::Lost;
                }
                Err(error) => {
                    // A sidecar that never answered (a wrong CA, a plain endpoint, a typo)
                    // says why in the log, once per different reason.
                    if health.boot.is_none() {
                        let said = error.to_string();
                        if health.last_error.as_deref() != Some(said.as_str()) {
                            tracing::warn!(sidecar = %this.endpoint.id, url = %this.endpoint.url, error = %said, "the sidecar does not answer its health checks");
                            health.last_error = Some(said);
                        }
                    }
                }
            }
        }
        if let Some(why) = lost {
            this.lose_all(&why);
        }
        if checked.is_ok() {
            let orphans: Vec<String> =
                std::mem::take(&mut *this.orphans.lock().unwrap_or_else(|e| e.into_inner()));
            for session in orphans {
                let _ = this
                    .call(
                        Method::DELETE,
                        &format!("/v1/sidecar/sessions/{session}"),
                        Bytes::new(),
                        "application/json",
                        CALL_TIMEOUT,
                    )
                    .await;
            }
        }
        drop(this);
        tokio::time::sleep(interval).await;
    }
}
