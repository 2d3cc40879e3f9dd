use crate::vocabulary::EventName;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use serde_json::json;

use super::*;

const WAIT: Duration = Duration::from_secs(20);

fn hub_with(persistence: Arc<MemoryPersistence>, config: HubConfig) -> EventHub {
    EventHub::new(persistence, config)
}

fn config(buffer: usize, subscriber_queue: usize) -> HubConfig {
    HubConfig {
        buffer,
        subscriber_queue,
        ..HubConfig::default()
    }
}

fn publish_n(hub: &EventHub, session: &str, n: u64) {
    for i in 0..n {
        hub.publish(session, EventName::ToolLog, json!({ "i": i }));
    }
}

/// Everything until the stream ends (the session must be closed).
async fn collect(sub: Subscription) -> Vec<Delivery> {
    tokio::time::timeout(WAIT, sub.collect::<Vec<_>>())
        .await
        .expect("the stream ends")
}

/// The next `n` deliveries.
async fn take(sub: &mut Subscription, n: usize) -> Vec<Delivery> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let next = tokio::time::timeout(WAIT, sub.next())
            .await
            .expect("a delivery");
        out.push(next.expect("the stream goes on"));
    }
    out
}

fn seqs(deliveries: &[Delivery]) -> Vec<u64> {
    deliveries
        .iter()
        .map(|d| match d {
            Delivery::Event(event) => event.seq,
            Delivery::Gap { from, to } => panic!("unexpected gap {from}..={to}"),
        })
        .collect()
}

fn event_seq(delivery: &Delivery) -> u64 {
    match delivery {
        Delivery::Event(event) => event.seq,
        Delivery::Gap { from, to } => panic!("unexpected gap {from}..={to}"),
    }
}

#[tokio::test]
async fn numbering_continues_after_restart() {
    let persistence = Arc::new(MemoryPersistence::new());
    let hub = hub_with(persistence.clone(), HubConfig::default());
    assert_eq!(hub.last_seq("s"), 0);
    assert_eq!(hub.publish("s", EventName::SessionCreated, json!({})), 1);
    assert_eq!(hub.publish("s", EventName::TaskQueued, json!({})), 2);
    assert_eq!(hub.publish("s", EventName::TaskStarted, json!({})), 3);
    assert_eq!(
        hub.publish("other", EventName::SessionCreated, json!({})),
        1
    );
    drop(hub);

    let hub = hub_with(persistence, HubConfig::default());
    assert_eq!(hub.last_seq("s"), 3);
    assert_eq!(
        hub.publish("s", EventName::TaskCompleted, json!({ "ok": true })),
        4
    );
    assert_eq!(hub.publish("other", EventName::ToolLog, json!({})), 2);

    // 2 and 3 come from the persistence (the new hub's ring only has 4).
    let mut sub = hub.subscribe("s", Some(1)).unwrap();
    let got = take(&mut sub, 3).await;
    assert_eq!(seqs(&got), [2, 3, 4]);
    assert_eq!(got[0].name(), "task.queued");
    assert_eq!(
        hub.publish("s", EventName::ToolLog, json!({ "live": true })),
        5
    );
    let got = take(&mut sub, 1).await;
    assert_eq!(seqs(&got), [5]);
    assert_eq!(parse(&got[0].data()), json!({ "live": true }));
}

#[tokio::test]
async fn replay_returns_exactly_the_events_after_the_position() {
    let persistence = Arc::new(MemoryPersistence::new());
    // Ring of 8: replays of older events go through the persistence.
    let hub = hub_with(persistence, config(8, 4));
    publish_n(&hub, "s", 20);

    for after in [0, 1, 5, 12, 13, 19] {
        let mut sub = hub.subscribe("s", Some(after)).unwrap();
        let n = usize::try_from(20 - after).unwrap();
        let got = take(&mut sub, n).await;
        assert_eq!(
            seqs(&got),
            (after + 1..=20).collect::<Vec<_>>(),
            "after {after}"
        );
        assert!(sub.next().now_or_never().is_none(), "nothing more yet");
    }

    // Only new events.
    let mut sub = hub.subscribe("s", None).unwrap();
    assert!(sub.next().now_or_never().is_none());
    hub.publish("s", EventName::ToolLog, json!("x"));
    assert_eq!(seqs(&take(&mut sub, 1).await), [21]);

    // A position beyond the end: events up to it are skipped.
    let mut sub = hub.subscribe("s", Some(22)).unwrap();
    hub.publish("s", EventName::ToolLog, json!("y"));
    hub.publish("s", EventName::ToolLog, json!("z"));
    assert_eq!(seqs(&take(&mut sub, 1).await), [23]);

    // The same on a closed session: the backlog, then the end.
    hub.close("s");
    for after in [0, 9, 22] {
        let got = collect(hub.subscribe("s", Some(after)).unwrap()).await;
        assert_eq!(seqs(&got), (after + 1..=23).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn paged_replay_from_the_persistence() {
    let persistence = Arc::new(MemoryPersistence::new());
    let hub = hub_with(
        persistence,
        HubConfig {
            buffer: 10,
            subscriber_queue: 8,
            replay_limit: 7,
            ..HubConfig::default()
        },
    );
    publish_n(&hub, "s", 100);
    hub.close("s");
    let got = collect(hub.subscribe("s", Some(3)).unwrap()).await;
    assert_eq!(seqs(&got), (4..=100).collect::<Vec<_>>());
}

/// Tiny deterministic generator; no `rand` in the dependencies.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// A task publishes 10,000 events, then closes the session, while
/// subscribers attach at random points (from random positions or "only new")
/// and read to the end at irregular speeds: every one must see each sequence
/// number from its start to the last exactly once, in order, with no gap.
async fn race(config: HubConfig) -> u64 {
    const TOTAL: u64 = 10_000;
    const SUBSCRIBERS: u64 = 64;
    let hub = hub_with(Arc::new(MemoryPersistence::new()), config);

    let publisher = {
        let hub = hub.clone();
        tokio::spawn(async move {
            for i in 0..TOTAL {
                hub.publish("s", EventName::ToolProgress, json!({ "i": i }));
                if i % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            hub.close("s");
        })
    };

    let mut subscribers = Vec::new();
    for k in 0..SUBSCRIBERS {
        let hub = hub.clone();
        subscribers.push(tokio::spawn(async move {
            let mut rng = XorShift(0x9e37_79b9_7f4a_7c15 ^ (k + 1).wrapping_mul(0x2545_f491));
            let attach_at = rng.below(TOTAL);
            while hub.last_seq("s") < attach_at && !hub.is_closed("s") {
                tokio::task::yield_now().await;
            }
            let after = match rng.below(3) {
                0 => None,
                _ => Some(rng.below(hub.last_seq("s") + 1)),
            };
            let mut sub = match hub.subscribe("s", after) {
                Ok(sub) => sub,
                Err(HubError::Closed) => {
                    assert!(after.is_none_or(|a| a >= TOTAL));
                    return 0;
                }
                Err(err) => panic!("{err}"),
            };
            let mut expected = after.map(|a| a + 1);
            let mut count = 0u64;
            while let Some(delivery) = sub.next().await {
                let seq = event_seq(&delivery);
                let want = *expected.get_or_insert(seq);
                assert_eq!(seq, want, "subscriber {k} (after {after:?})");
                expected = Some(seq + 1);
                count += 1;
                if rng.below(100) == 0 {
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
            }
            assert_eq!(expected, Some(TOTAL + 1), "subscriber {k} got to the end");
            count
        }));
    }

    tokio::time::timeout(Duration::from_secs(60), publisher)
        .await
        .expect("publishing finishes")
        .unwrap();
    let mut delivered = 0;
    for subscriber in subscribers {
        delivered += tokio::time::timeout(Duration::from_secs(60), subscriber)
            .await
            .expect("subscriber finishes")
            .unwrap();
    }
    assert!(delivered > 0);
    assert_eq!(hub.subscribers(), 0);
    hub.dropped()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_racing_a_publisher_get_every_event_once_in_order() {
    // Default bounds: mostly live delivery.
    race(HubConfig::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_subscribers_racing_a_publisher_get_every_event_once_in_order() {
    // A small ring and tiny queues: lagging, catch-up from the ring and
    // catch-up from the persistence all happen during the race.
    race(config(64, 8)).await;
}

#[tokio::test]
async fn a_gap_names_exactly_what_exists_nowhere() {
    // Persistence keeps 10 events, the ring 5: of 30 events, 21..=30 remain.
    let persistence = Arc::new(MemoryPersistence::bounded(10));
    let hub = hub_with(persistence.clone(), config(5, 4));
    publish_n(&hub, "s", 30);
    assert_eq!(persistence.count("s"), 10);

    let mut sub = hub.subscribe("s", Some(3)).unwrap();
    let got = take(&mut sub, 11).await;
    assert_eq!(got[0], Delivery::Gap { from: 4, to: 20 });
    assert_eq!(got[0].id(), 20);
    assert_eq!(got[0].name(), GAP_EVENT);
    assert_eq!(parse(&got[0].data()), json!({ "from": 4, "to": 20 }));
    assert_eq!(seqs(&got[1..]), (21..=30).collect::<Vec<_>>());

    let mut sub = hub.subscribe("s", Some(0)).unwrap();
    let got = take(&mut sub, 11).await;
    assert_eq!(got[0], Delivery::Gap { from: 1, to: 20 });
    assert_eq!(seqs(&got[1..]), (21..=30).collect::<Vec<_>>());

    let mut sub = hub.subscribe("s", Some(22)).unwrap();
    assert_eq!(
        seqs(&take(&mut sub, 8).await),
        (23..=30).collect::<Vec<_>>()
    );

    // After a restart the ring is empty: the persistence alone decides.
    let hub = hub_with(persistence, config(5, 4));
    hub.close("s");
    let got = collect(hub.subscribe("s", Some(18)).unwrap()).await;
    assert_eq!(got[0], Delivery::Gap { from: 19, to: 20 });
    assert_eq!(seqs(&got[1..]), (21..=30).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_slow_subscriber_never_blocks_and_catches_up() {
    let persistence = Arc::new(MemoryPersistence::new());
    let hub = hub_with(persistence, config(1024, 16));
    let mut sub = hub.subscribe("s", None).unwrap();

    // Never polled meanwhile: publish must not wait for it.
    publish_n(&hub, "s", 5_000);
    assert_eq!(hub.dropped(), 5_000 - 16);

    // 1..=16 from the queue, 17..=3976 from the persistence, the rest from
    // the ring: in order, nothing lost, nothing twice.
    let got = take(&mut sub, 5_000).await;
    assert_eq!(seqs(&got), (1..=5_000).collect::<Vec<_>>());
    assert!(sub.next().now_or_never().is_none());

    // Caught up: live again, nothing more dropped.
    hub.publish("s", EventName::ToolLog, json!({}));
    assert_eq!(seqs(&take(&mut sub, 1).await), [5_001]);
    assert_eq!(hub.dropped(), 5_000 - 16);
}

#[tokio::test]
async fn a_slow_subscriber_gets_a_precise_gap_when_events_are_gone() {
    let persistence = Arc::new(MemoryPersistence::bounded(100));
    let hub = hub_with(persistence, config(64, 16));
    let sub = hub.subscribe("s", None).unwrap();
    publish_n(&hub, "s", 5_000);
    assert_eq!(hub.dropped(), 5_000 - 16);
    hub.close("s");

    let got = collect(sub).await;
    assert_eq!(seqs(&got[..16]), (1..=16).collect::<Vec<_>>());
    assert_eq!(
        got[16],
        Delivery::Gap {
            from: 17,
            to: 4_900
        }
    );
    assert_eq!(seqs(&got[17..]), (4_901..=5_000).collect::<Vec<_>>());

    // Same ordering even when the subscriber lags again during catch-up.
    let persistence = Arc::new(MemoryPersistence::new());
    let hub = hub_with(persistence, config(32, 4));
    let mut sub = hub.subscribe("s", None).unwrap();
    let mut got = Vec::new();
    for round in 0..50 {
        publish_n(&hub, "s", 37);
        got.extend(take(&mut sub, 10 + round % 7).await);
    }
    hub.close("s");
    got.extend(collect(sub).await);
    assert_eq!(seqs(&got), (1..=50 * 37).collect::<Vec<_>>());
    assert!(hub.dropped() > 0);
}

#[tokio::test]
async fn close_ends_streams_after_the_last_event() {
    let hub = hub_with(Arc::new(MemoryPersistence::new()), HubConfig::default());
    let early = hub.subscribe("s", None).unwrap();
    let waiting = {
        let sub = hub.subscribe("s", None).unwrap();
        tokio::spawn(collect(sub))
    };
    tokio::task::yield_now().await;
    publish_n(&hub, "s", 3);
    hub.publish(
        "s",
        EventName::SessionClosed,
        json!({ "reason": "deleted" }),
    );
    hub.close("s");
    assert!(hub.is_closed("s"));

    for got in [collect(early).await, waiting.await.unwrap()] {
        assert_eq!(seqs(&got), [1, 2, 3, 4]);
        assert_eq!(got[3].name(), "session.closed");
    }
}

#[tokio::test]
async fn subscribing_to_a_closed_session() {
    let hub = hub_with(Arc::new(MemoryPersistence::new()), HubConfig::default());
    publish_n(&hub, "s", 5);
    hub.close("s");
    assert_eq!(hub.subscribe("s", None).unwrap_err(), HubError::Closed);
    assert_eq!(hub.subscribe("s", Some(5)).unwrap_err(), HubError::Closed);
    assert_eq!(hub.subscribe("s", Some(9)).unwrap_err(), HubError::Closed);
    assert_eq!(hub.subscribers(), 0);
    let got = collect(hub.subscribe("s", Some(4)).unwrap()).await;
    assert_eq!(seqs(&got), [5]);

    // An empty session closed right away.
    hub.close("empty");
    assert_eq!(
        hub.subscribe("empty", Some(0)).unwrap_err(),
        HubError::Closed
    );
}

#[tokio::test]
async fn ten_thousand_subscribers_each_get_the_event() {
    let hub = hub_with(Arc::new(MemoryPersistence::new()), HubConfig::default());
    let mut subs: Vec<_> = (0..10_000)
        .map(|_| hub.subscribe("s", None).unwrap())
        .collect();
    assert_eq!(hub.subscribers(), 10_000);
    let seq = hub.publish("s", EventName::ToolLog, json!({ "hello": "all" }));
    for sub in &mut subs {
        let delivery = sub.next().now_or_never().expect("ready").expect("an event");
        assert_eq!(event_seq(&delivery), seq);
    }
    assert_eq!(hub.dropped(), 0);
    drop(subs);
    assert_eq!(hub.subscribers(), 0);
}

#[tokio::test]
async fn subscriber_limit() {
    let hub = hub_with(
        Arc::new(MemoryPersistence::new()),
        HubConfig {
            max_subscribers: 2,
            ..HubConfig::default()
        },
    );
    let a = hub.subscribe("a", None).unwrap();
    let _b = hub.subscribe("b", None).unwrap();
    assert_eq!(
        hub.subscribe("a", None).unwrap_err(),
        HubError::TooManySubscribers
    );
    drop(a);
    let _c = hub.subscribe("c", None).unwrap();
    assert_eq!(hub.subscribers(), 2);
}

#[tokio::test]
async fn forget_frees_a_closed_session_once_nobody_listens() {
    let persistence = Arc::new(MemoryPersistence::new());
    let hub = hub_with(persistence, HubConfig::default());
    publish_n(&hub, "s", 3);

    hub.forget("s"); // open: kept
    assert_eq!(hub.last_seq("s"), 3);
    let sub = hub.subscribe("s", Some(0)).unwrap();
    hub.close("s");
    hub.forget("s"); // someone listens: later
    assert!(hub.is_closed("s"));
    assert_eq!(seqs(&collect(sub).await), [1, 2, 3]);
    assert!(!hub.is_closed("s"), "forgotten when the subscriber left");

    // Numbering survives forgetting; closing again restores the state.
    assert_eq!(hub.last_seq("s"), 3);
    hub.close("s");
    assert_eq!(hub.subscribe("s", None).unwrap_err(), HubError::Closed);
    let got = collect(hub.subscribe("s", Some(1)).unwrap()).await;
    assert_eq!(seqs(&got), [2, 3]);
    hub.forget("s");
    assert!(!hub.is_closed("s"));
    assert_eq!(hub.publish("s", EventName::ToolLog, json!({})), 4);
}

fn parse(text: &str) -> serde_json::Value {
    serde_json::from_str(text).expect("event data is JSON")
}

#[test]
fn events_serialize_with_their_data() {
    let event = Event {
        seq: 7,
        name: "tool.log".into(),
        data: r#"{"line":"hi"}"#.into(),
        at_ms: 1,
    };
    assert_eq!(
        serde_json::to_value(&event).unwrap(),
        json!({ "seq": 7, "name": "tool.log", "data": { "line": "hi" }, "at_ms": 1 })
    );
}

#[test]
fn works_without_a_runtime() {
    let hub = hub_with(Arc::new(MemoryPersistence::new()), config(2, 2));
    publish_n(&hub, "s", 6);
    hub.close("s");
    let mut sub = hub.subscribe("s", Some(0)).unwrap();
    let mut got = Vec::new();
    while let Some(delivery) = sub.next().now_or_never().expect("loads synchronously") {
        got.push(delivery);
    }
    assert_eq!(seqs(&got), (1..=6).collect::<Vec<_>>());
}
