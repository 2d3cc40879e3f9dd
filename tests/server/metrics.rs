//! `/metrics` of the real server: valid Prometheus text, HTTP requests by route template and
//! status class, rate-limited requests, dropped events as a counter, a real `service.name`,
//! and no label that names a session or a principal.

use crate::common::*;
use openmetrics_parser::prometheus::parse_prometheus;
use openmetrics_parser::{MetricsExposition, PrometheusType, PrometheusValue, Sample};
use reqwest::StatusCode;

type Exposition = MetricsExposition<PrometheusType, PrometheusValue>;

fn value(sample: &Sample<PrometheusValue>) -> f64 {
    match &sample.value {
        PrometheusValue::Counter(c) => c.value.as_f64(),
        PrometheusValue::Gauge(n) | PrometheusValue::Unknown(n) => n.as_f64(),
        other => panic!("{other:?} is not a plain number"),
    }
}

/// Every sample of `family` with its labels.
fn samples(scrape: &Exposition, family: &str) -> Vec<(Vec<(String, String)>, f64)> {
    let Some(family) = scrape.families.get(family) else {
        return Vec::new();
    };
    family
        .iter_samples()
        .map(|s| {
            let labels = s.get_labelset().unwrap();
            let labels = labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            (labels, value(s))
        })
        .collect()
}

fn has(labels: &[(String, String)], name: &str, value: &str) -> bool {
    labels.iter().any(|(k, v)| k == name && v == value)
}

/// The `toolgate_http_requests_total` sample with these labels.
fn requests(scrape: &Exposition, route: &str, method: &str, class: &str) -> f64 {
    samples(scrape, "toolgate_http_requests_total")
        .into_iter()
        .find(|(labels, _)| {
            has(labels, "route", route)
                && has(labels, "method", method)
                && has(labels, "status_class", class)
        })
        .map_or(0.0, |(_, v)| v)
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_parse_as_prometheus_text() {
    let server = Server::start_with(|config| {
        config.rate_limit = 1;
        config.rate_burst = 3;
    })
    .await;
    let alice = server.key("alice", "developer");
    let session = server.session(&alice).await;
    let path = format!("/v1/sessions/{session}");
    // Until alice's burst is spent and her rate refuses one.
    let mut answered = 0.0;
    loop {
        let response = server.get(&alice, &path).await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            problem(response, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
            break;
        }
        assert_eq!(response.status(), StatusCode::OK);
        answered += 1.0;
        assert!(answered < 100.0, "never rate limited");
    }
    let unknown = server
        .client
        .get(server.url("/no/such/route"))
        .send()
        .await
        .unwrap();
    problem(unknown, StatusCode::NOT_FOUND, "not_found").await;

    let text = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let scrape = parse_prometheus(&text).expect("Prometheus text");

    assert_eq!(
        requests(&scrape, "/v1/sessions/{id}", "GET", "2xx"),
        answered,
        "{text}"
    );
    assert_eq!(requests(&scrape, "/v1/sessions/{id}", "GET", "4xx"), 1.0);
    assert_eq!(requests(&scrape, "/v1/sessions", "POST", "2xx"), 1.0);
    assert_eq!(requests(&scrape, "unmatched", "GET", "4xx"), 1.0);
    assert!(
        samples(&scrape, "toolgate_rate_limited_total")
            .iter()
            .any(|(labels, v)| has(labels, "limit", "rate") && *v >= 1.0),
        "{text}"
    );
    let dropped = &scrape.families["toolgate_events_dropped_total"];
    assert_eq!(dropped.family_type, PrometheusType::Counter, "{text}");
    assert!(
        samples(&scrape, "target_info")
            .iter()
            .any(|(labels, _)| has(labels, "service_name", "toolgate")),
        "{text}"
    );
    // Bounded cardinality: nothing names a session or a principal.
    for (name, family) in &scrape.families {
        for (labels, _) in samples(&scrape, name) {
            for (label, value) in labels {
                assert!(
                    !value.contains(&session) && value != "alice" && value != "admin",
                    "{}: {label}={value}",
                    family.family_name
                );
            }
        }
    }
    server.stop().await;
}
