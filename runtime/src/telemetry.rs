//! Metrics in Prometheus text format, through OpenTelemetry. No per-session
//! labels: cardinality stays bounded however many sessions come and go.

use opentelemetry::KeyValue;
use opentelemetry::metrics::{
    Counter, Histogram, MeterProvider, ObservableCounter, ObservableGauge,
};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use prometheus::{Encoder, Registry, TextEncoder};
use std::sync::Arc;

/// Values the server reads when metrics are scraped.
pub trait Gauges: Send + Sync + 'static {
    fn active_sessions(&self) -> u64;
    fn sse_subscribers(&self) -> u64;
    fn events_dropped(&self) -> u64;
    /// HTTP connections open now.
    fn connections_open(&self) -> u64;
    /// Connections closed at once because `max_connections` were open.
    fn connections_refused(&self) -> u64;
    /// Policy sets reloaded since the start.
    fn policy_reloads(&self) -> u64;
    /// Reloads refused since the start (the last good set stayed in force).
    fn policy_reload_failures(&self) -> u64;
    /// Whether the set on disk is one that was refused (1) or the one in force (0).
    fn policy_reload_failing(&self) -> u64;
}

pub struct Metrics {
    registry: Registry,
    _provider: SdkMeterProvider,
    tasks: Counter<u64>,
    task_seconds: Histogram<f64>,
    decision_seconds: Histogram<f64>,
    fuel: Counter<u64>,
    rate_limited: Counter<u64>,
    /// Observed on every scrape; kept alive with the provider.
    _gauges: Vec<ObservableGauge<u64>>,
    _observed_counters: Vec<ObservableCounter<u64>>,
}

impl Metrics {
    pub fn new(gauges: Arc<dyn Gauges>) -> anyhow::Result<Self> {
        let registry = Registry::new();
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .build()?;
        let provider = SdkMeterProvider::builder().with_reader(exporter).build();
        let meter = provider.meter("toolgate");
        let gauge = |name: &'static str, help: &'static str, read: fn(&dyn Gauges) -> u64| {
            let gauges = gauges.clone();
            meter
                .u64_observable_gauge(name)
                .with_description(help)
                .with_callback(move |observer| observer.observe(read(gauges.as_ref()), &[]))
                .build()
        };
        let observed_counter =
            |name: &'static str, help: &'static str, read: fn(&dyn Gauges) -> u64| {
                let gauges = gauges.clone();
                meter
                    .u64_observable_counter(name)
                    .with_description(help)
                    .with_callback(move |observer| observer.observe(read(gauges.as_ref()), &[]))
                    .build()
            };
        let observed_counters = vec![
            observed_counter("toolgate.policy.reloads", "Policy sets reloaded", |g| {
                g.policy_reloads()
            }),
            observed_counter(
                "toolgate.policy.reload_failures",
                "Policy reloads refused (the last good set stayed in force)",
                |g| g.policy_reload_failures(),
            ),
            observed_counter(
                "toolgate.connections.refused",
                "Connections closed at once because max_connections were open",
                |g| g.connections_refused(),
            ),
        ];
        let gauges = vec![
            gauge(
                "toolgate.policy.reload_failing",
                "1 while the policy set on disk is one that was refused",
                |g| g.policy_reload_failing(),
            ),
            gauge("toolgate.sessions.active", "Open sessions", |g| {
                g.active_sessions()
            }),
            gauge(
                "toolgate.sse.subscribers",
                "Connected SSE subscribers",
                |g| g.sse_subscribers(),
            ),
            gauge("toolgate.connections.open", "Open HTTP connections", |g| {
                g.connections_open()
            }),
            gauge(
                "toolgate.events.dropped",
                "Events slow subscribers missed from their queue",
                |g| g.events_dropped(),
            ),
        ];
        Ok(Self {
            _gauges: gauges,
            _observed_counters: observed_counters,
            tasks: meter
                .u64_counter("toolgate.tasks")
                .with_description("Finished tasks by outcome")
                .build(),
            task_seconds: meter
                .f64_histogram("toolgate.task.duration")
                .with_unit("s")
                .with_description("Task wall time")
                .build(),
            decision_seconds: meter
                .f64_histogram("toolgate.decision.duration")
                .with_unit("s")
                .with_description("Policy decision time")
                .build(),
            fuel: meter
                .u64_counter("toolgate.fuel.consumed")
                .with_description("Fuel consumed by tasks")
                .build(),
            rate_limited: meter
                .u64_counter("toolgate.rate_limited")
                .with_description("Requests refused by rate limits")
                .build(),
            registry,
            _provider: provider,
        })
    }

    pub fn task_finished(&self, outcome: &str, seconds: f64, fuel: u64) {
        let outcome = [KeyValue::new("outcome", outcome.to_owned())];
        self.tasks.add(1, &outcome);
        self.task_seconds.record(seconds, &outcome);
        self.fuel.add(fuel, &[]);
    }

    pub fn decision(&self, action: &'static str, seconds: f64) {
        self.decision_seconds
            .record(seconds, &[KeyValue::new("action", action)]);
    }

    pub fn rate_limited(&self) {
        self.rate_limited.add(1, &[]);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}
