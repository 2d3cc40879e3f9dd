//! What a sidecar is sent before it can take a task: the policy set of the task's version
//! and the task's plugin, each once however many tasks find it missing.

use super::{Inner, UPLOAD_TIMEOUT};
use crate::sidecar::SidecarError;
use crate::sidecar::server::PluginRef;
use bytes::Bytes;
use http::Method;
use std::time::{Duration, Instant};

/// A shipment this recent is taken as done: the tasks that waited for it need not repeat it.
/// (Older, it is shipped again: the sidecar may have dropped an old policy version since.)
const SHIPPED_RECENTLY: Duration = Duration::from_secs(2);

impl Inner {
    /// Runs `ship` for `what` unless it was shipped a moment ago; one shipment at a time.
    async fn ship_once<F>(&self, what: String, ship: F) -> Result<(), SidecarError>
    where
        F: std::future::Future<Output = Result<(), SidecarError>>,
    {
        let mut shipped = self.shipped.lock().await;
        if shipped
            .get(&what)
            .is_some_and(|at| at.elapsed() < SHIPPED_RECENTLY)
        {
            return Ok(());
        }
        ship.await?;
        shipped.retain(|_, at| at.elapsed() < SHIPPED_RECENTLY);
        shipped.insert(what, Instant::now());
        Ok(())
    }

    pub(super) async fn ship_policy(&self, version: &str) -> Result<(), SidecarError> {
        self.ship_once(format!("policy:{version}"), self.put_policy(version))
            .await
    }

    pub(super) async fn ship_plugin(&self, plugin: &PluginRef) -> Result<(), SidecarError> {
        self.ship_once(format!("plugin:{}", plugin.digest), self.put_plugin(plugin))
            .await
    }

    async fn put_policy(&self, version: &str) -> Result<(), SidecarError> {
        let snapshot = self.context.policy.snapshot();
        if snapshot.version != version {
            return Err(SidecarError::Internal(format!(
                "policy-set version {version} was replaced while its task was being sent"
            )));
        }
        let body = Bytes::from(serde_json::to_vec(snapshot.sources()).unwrap_or_default());
        self.call(
            Method::PUT,
            &format!("/v1/sidecar/policies/{version}"),
            body,
            "application/json",
            UPLOAD_TIMEOUT,
        )
        .await
        .map(drop)
    }

    async fn put_plugin(&self, plugin: &PluginRef) -> Result<(), SidecarError> {
        let bytes = self
            .context
            .catalog
            .bytes_of(&plugin.name, &plugin.digest)
            .await
            .ok_or_else(|| {
                SidecarError::Internal(format!(
                    "plugin `{}` changed while its task was being sent",
                    plugin.name
                ))
            })?;
        let path = format!("/v1/sidecar/plugins/{}?name={}", plugin.digest, plugin.name);
        self.call(
            Method::PUT,
            &path,
            bytes,
            "application/wasm",
            UPLOAD_TIMEOUT,
        )
        .await
        .map(drop)
    }
}
