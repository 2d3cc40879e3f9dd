//! Outbound HTTP: enabled only when granted, and then each request is checked
//! by the gate and by the address rules in the outbound hook.

use super::{OutboundHttp, StoreParts, TaskSpec};

pub(crate) fn apply(spec: &TaskSpec<'_>, parts: &mut StoreParts) {
    let network = &spec.grants.network;
    if network.http {
        parts.outbound = OutboundHttp::granted(
            spec.gate.clone(),
            parts.host.decisions.clone(),
            network.allow_private_addresses,
            spec.limits.timeout,
            spec.grants.credentials.clone(),
        );
    }
}
