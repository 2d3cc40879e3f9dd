//! Metrics in Prometheus text format, through OpenTelemetry. No per-session or
//! per-principal labels: cardinality stays bounded however many sessions and keys come
//! and go (HTTP requests are labelled by route template, never by the path asked for).

use opentelemetry::KeyValue;
use opentelemetry::metrics::{
    Counter, Histogram, MeterProvider, ObservableCounter, ObservableGauge,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use prometheus::{Encoder, Registry, TextEncoder};
use std::sync::Arc;

fn by_resource(resources: crate::hosts::Resources) -> Vec<(KeyValue, u64)> {
    resources
        .named()
        .into_iter()
        .map(|(name, value)| (KeyValue::new("resource", name), value))
        .collect()
}

/// Values the server reads when metrics are scraped.
pub trait Gauges: Send + Sync + 'static {
    fn active_sessions(&self) -> u64;
    fn sse_subscribers(&self) -> u64;
    /// Events slow subscribers missed from their queue since the start.
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
    /// Hosts by state, capacity and allocation, and what placement did.
    fn hosts(&self) -> crate::hosts::RegistryFigures;
}

pub struct Metrics {
    registry: Registry,
    _provider: SdkMeterProvider,
    tasks: Counter<u64>,
    task_seconds: Histogram<f64>,
    decision_seconds: Histogram<f64>,
    fuel: Counter<u64>,
    rate_limited: Counter<u64>,
    http_requests: Counter<u64>,
    runs: Counter<u64>,
    model_calls: Counter<u64>,
    model_tokens: Counter<u64>,
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
        // `target_info{service_name="toolgate",...}` rather than `unknown_service`.
        let resource = Resource::builder()
            .with_service_name("toolgate")
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let provider = SdkMeterProvider::builder()
            .with_resource(resource)
            .with_reader(exporter)
            .build();
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
        let labelled_gauge =
            |name: &'static str,
             help: &'static str,
             read: fn(&crate::hosts::RegistryFigures) -> Vec<(KeyValue, u64)>| {
                let gauges = gauges.clone();
                meter
                    .u64_observable_gauge(name)
                    .with_description(help)
                    .with_callback(move |observer| {
                        for (label, value) in read(&gauges.hosts()) {
                            observer.observe(value, &[label]);
                        }
                    })
                    .build()
            };
        let host_gauges = vec![
            labelled_gauge("toolgate.hosts", "Hosts by state", |f| {
                f.by_state
                    .iter()
                    .map(|(state, n)| (KeyValue::new("state", state.as_str()), *n))
                    .collect()
            }),
            labelled_gauge(
                "toolgate.hosts.capacity",
                "What ready hosts have, by resource (cpu_millis, memory_mb, disk_mb)",
                |f| by_resource(f.capacity),
            ),
            labelled_gauge(
                "toolgate.hosts.allocatable",
                "What sessions may reserve on ready hosts (capacity times overcommit), by resource",
                |f| by_resource(f.allocatable),
            ),
            labelled_gauge(
                "toolgate.hosts.allocated",
                "What open sessions reserve, by resource",
                |f| by_resource(f.allocated),
            ),
        ];
        let host_counter =
            |name: &'static str,
             help: &'static str,
             read: fn(&crate::hosts::RegistryFigures) -> u64| {
                let gauges = gauges.clone();
                meter
                    .u64_observable_counter(name)
                    .with_description(help)
                    .with_callback(move |observer| observer.observe(read(&gauges.hosts()), &[]))
                    .build()
            };
        let mut observed_counters = vec![
            host_counter("toolgate.hosts.state_changes", "Host state changes", |f| {
                f.state_changes
            }),
            host_counter(
                "toolgate.hosts.promotions",
                "Standby hosts promoted for want of room",
                |f| f.promotions,
            ),
            host_counter(
                "toolgate.hosts.provisions",
                "Provision calls made to drivers",
                |f| f.provisions,
            ),
            host_counter(
                "toolgate.hosts.provision_failures",
                "Provision calls that failed",
                |f| f.provision_failures,
            ),
            host_counter(
                "toolgate.hosts.releases",
                "Idle or failed hosts released to their driver",
                |f| f.releases,
            ),
            host_counter(
                "toolgate.placement.no_capacity",
                "Sessions refused because no host had room",
                |f| f.no_capacity,
            ),
        ];
        observed_counters.extend([
            observed_counter("toolgate.policy.reloads", "Policy sets reloaded", |g| {
                g.policy_reloads()
            }),
            observed_counter(
                "toolgate.policy.reload_failures",
                "Policy reloads refused (the last good set stayed in force)",
                |g| g.policy_reload_failures(),
            ),
            observed_counter(
                "toolgate.events.dropped",
                "Events slow subscribers missed from their queue",
                |g| g.events_dropped(),
            ),
            observed_counter(
                "toolgate.connections.refused",
                "Connections closed at once because max_connections were open",
                |g| g.connections_refused(),
            ),
        ]);
        let mut gauges = host_gauges;
        gauges.extend([
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
        ]);
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
                .with_description("Requests refused by rate limits (`limit`: rate or in_flight)")
                .build(),
            http_requests: meter
                .u64_counter("toolgate.http.requests")
                .with_description(
                    "HTTP requests answered, by route template, method and status class",
                )
                .build(),
            runs: meter
                .u64_counter("toolgate.runs")
                .with_description("Finished agent runs by agent and outcome")
                .build(),
            model_calls: meter
                .u64_counter("toolgate.model.calls")
                .with_description("Model calls of agent runs by provider, model and outcome")
                .build(),
            model_tokens: meter
                .u64_counter("toolgate.model.tokens")
                .with_description(
                    "Tokens of model calls by provider, model and kind (prompt, completion)",
                )
                .build(),
            registry,
            _provider: provider,
        })
    }

    pub fn run_finished(&self, agent: &str, outcome: &str) {
        self.runs.add(
            1,
            &[
                KeyValue::new("agent", agent.to_owned()),
                KeyValue::new("outcome", outcome.to_owned()),
            ],
        );
    }

    /// One model call: `outcome` is `ok` or the model error's kind; tokens when it answered.
    pub fn model_call(
        &self,
        provider: &str,
        model: &str,
        outcome: &str,
        tokens: Option<(u64, u64)>,
    ) {
        let provider = KeyValue::new("provider", provider.to_owned());
        let model = KeyValue::new("model", model.to_owned());
        self.model_calls.add(
            1,
            &[
                provider.clone(),
                model.clone(),
                KeyValue::new("outcome", outcome.to_owned()),
            ],
        );
        if let Some((prompt, completion)) = tokens {
            for (kind, n) in [("prompt", prompt), ("completion", completion)] {
                self.model_tokens.add(
                    n,
                    &[provider.clone(), model.clone(), KeyValue::new("kind", kind)],
                );
            }
        }
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

    /// A request refused by the principal's request rate (`rate`) or its requests in flight
    /// (`in_flight`).
    pub fn rate_limited(&self, limit: &'static str) {
        self.rate_limited.add(1, &[KeyValue::new("limit", limit)]);
    }

    /// One answered request: `route` is the route template (`/v1/sessions/{id}`), or
    /// `unmatched` for a path no route has.
    pub fn http_request(&self, route: &str, method: &http::Method, status: http::StatusCode) {
        let method = match *method {
            http::Method::GET => "GET",
            http::Method::POST => "POST",
            http::Method::PUT => "PUT",
            http::Method::DELETE => "DELETE",
            http::Method::HEAD => "HEAD",
            http::Method::PATCH => "PATCH",
            http::Method::OPTIONS => "OPTIONS",
            // Anything a client makes up is one label value, not one each.
            _ => "other",
        };
        let class = match status.as_u16() {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.http_requests.add(
            1,
            &[
                KeyValue::new("route", route.to_owned()),
                KeyValue::new("method", method),
                KeyValue::new("status_class", class),
            ],
        );
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}
