//! [`ClusterLogBus`] against a real `nats-server`: nodes on connections of their own.

use super::*;
use crate::cluster::testing::NatsServer;
use chrono::Utc;
use std::time::Instant;
use wdeploy_core::LogSource;

async fn bus(server: &NatsServer, name: &str) -> (Nats, ClusterLogBus) {
    let me: NodeName = name.parse().unwrap();
    let nats = Nats::connect(&server.url(), &me).await.unwrap();
    let bus = ClusterLogBus::open(&nats, me).await.unwrap();
    (nats, bus)
}

fn line(node: &str, text: String) -> LogRecord {
    LogRecord {
        node: node.parse().unwrap(),
        at: Utc::now(),
        kind: LogSource::App,
        process: "web.1".to_string(),
        text,
    }
}

/// The next `n` lines of `lines`, failing after `within`.
async fn take(
    lines: &mut BoxStream<'static, (AppId, LogRecord)>,
    n: usize,
    within: Duration,
) -> Vec<(AppId, LogRecord)> {
    let mut got = Vec::with_capacity(n);
    let deadline = tokio::time::Instant::now() + within;
    while got.len() < n {
        match tokio::time::timeout_at(deadline, lines.next()).await {
            Ok(Some(line)) => got.push(line),
            _ => panic!("{} of {n} lines in {within:?}", got.len()),
        }
    }
    got
}

/// The texts of `app`'s lines, in the order received.
fn texts(lines: &[(AppId, LogRecord)], app: &AppId) -> Vec<String> {
    lines
        .iter()
        .filter(|(a, _)| a == app)
        .map(|(_, l)| l.text.clone())
        .collect()
}

/// How long the lines of a test may take to arrive: generous, because under a loaded
/// machine the ordered consumer can miss its heartbeats and make itself again, after a
/// back-off of some seconds (a CI run saw 1,787 of 2,010 lines in 20 s). Lines must all
/// come, in order; only how soon is not this test's business.
const ARRIVE_WITHIN: Duration = Duration::from_secs(90);

async fn nothing_more(lines: &mut BoxStream<'static, (AppId, LogRecord)>) {
    let more = tokio::time::timeout(Duration::from_millis(500), lines.next()).await;
    assert!(more.is_err(), "unexpected line {more:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_reach_the_other_nodes_kept_and_live() {
    let server = NatsServer::start().unwrap();
    let (_a_nats, a) = bus(&server, "node-a").await;
    let (_b_nats, b) = bus(&server, "node-b").await;
    let (x, y) = (AppId::random(), AppId::random());
    let mut at_b = b.subscribe().await.unwrap();

    // Two batches of 1,000 lines of x, each read before the next is sent. The stream
    // keeps the last 1,500 lines of each app (LOG_BUFFER), so a reader more than that
    // far behind one app loses the oldest, by design: a single batch of 2,000 did, on
    // a loaded machine, where b's reader fell behind the publisher (it then skipped
    // from x-1 to the first line kept, 1,511 of 2,010 lines).
    let mut got = Vec::new();
    for batch in 0..2 {
        for n in batch * 1000..(batch + 1) * 1000 {
            a.publish(&x, line("node-a", format!("x-{n}")));
            if n % 200 == 0 {
                // b's own lines are not shown back to it.
                b.publish(&y, line("node-b", format!("own-{n}")));
                a.publish(&y, line("node-a", format!("y-{}", n / 200)));
            }
        }
        got.extend(take(&mut at_b, 1005, ARRIVE_WITHIN).await);
    }
    assert!(got.iter().all(|(_, l)| l.node.as_str() == "node-a"));
    let expected_x: Vec<String> = (0..2000).map(|n| format!("x-{n}")).collect();
    let expected_y: Vec<String> = (0..10).map(|n| format!("y-{n}")).collect();
    assert_eq!(texts(&got, &x), expected_x);
    assert_eq!(texts(&got, &y), expected_y);
    nothing_more(&mut at_b).await;
    assert_eq!(a.dropped(), 0);

    // A node that comes later reads what the stream keeps: the last 1,500 lines of x.
    let (_c_nats, c) = bus(&server, "node-c").await;
    let mut at_c = c.subscribe().await.unwrap();
    let got = take(&mut at_c, 1500 + 10 + 10, ARRIVE_WITHIN).await;
    let expected_x: Vec<String> = (500..2000).map(|n| format!("x-{n}")).collect();
    assert_eq!(texts(&got, &x), expected_x);
    let of_a: Vec<(AppId, LogRecord)> = got
        .iter()
        .filter(|(_, l)| l.node.as_str() == "node-a")
        .cloned()
        .collect();
    assert_eq!(texts(&of_a, &y), expected_y);
    let of_b: Vec<(AppId, LogRecord)> = got
        .into_iter()
        .filter(|(_, l)| l.node.as_str() == "node-b")
        .collect();
    let expected_own: Vec<String> = (0..10).map(|n| format!("own-{}", n * 200)).collect();
    assert_eq!(texts(&of_b, &y), expected_own);
    nothing_more(&mut at_c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_bus_stops_its_publisher() {
    let server = NatsServer::start().unwrap();
    let (_nats, a) = bus(&server, "node-a").await;
    let counter = a.dropped.clone();
    assert_eq!(Arc::strong_count(&counter), 3);
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(2);
    while Arc::strong_count(&counter) > 1 {
        assert!(Instant::now() < deadline, "the publishing task still runs");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_never_waits_and_lines_flow_again_after_an_outage() {
    let mut server = NatsServer::start().unwrap();
    let (a_nats, a) = bus(&server, "node-a").await;
    let (_b_nats, b) = bus(&server, "node-b").await;
    let x = AppId::random();
    let mut at_b = b.subscribe().await.unwrap();
    // Another reader, read all along (through the outage), by a task of its own.
    let (_c_nats, c) = bus(&server, "node-c").await;
    let mut at_c = c.subscribe().await.unwrap();
    let (to_c, mut from_c) = tokio::sync::mpsc::unbounded_channel();
    let reading = tokio::spawn(async move {
        while let Some(line) = at_c.next().await {
            if to_c.send(line).is_err() {
                return;
            }
        }
    });
    for n in 0..100 {
        a.publish(&x, line("node-a", format!("before-{n}")));
    }
    let got = take(&mut at_b, 100, Duration::from_secs(10)).await;
    assert_eq!(got.last().unwrap().1.text, "before-99");
    for n in 0..100 {
        let got = tokio::time::timeout(Duration::from_secs(5), from_c.recv()).await;
        assert_eq!(got.unwrap().unwrap().1.text, format!("before-{n}"));
    }

    server.stop();
    let deadline = Instant::now() + Duration::from_secs(5);
    while a_nats.is_connected() {
        assert!(Instant::now() < deadline, "still connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(matches!(
        b.subscribe().await.map(|_| ()),
        Err(crate::error::StoreError::Unavailable(_))
    ));
    // Made first, to time the publishing alone.
    let lines: Vec<LogRecord> = (0..100_000)
        .map(|n| line("node-a", format!("away-{n}")))
        .collect();
    let started = Instant::now();
    for line in lines {
        a.publish(&x, line);
    }
    let took = started.elapsed();
    eprintln!("100,000 lines published in {took:?} with NATS away");
    assert!(took < Duration::from_millis(500), "{took:?}");
    // Everything not still queued was dropped; nothing waits for NATS.
    assert!(
        a.dropped() >= 100_000 - PUBLISH_QUEUE as u64,
        "{}",
        a.dropped()
    );

    // Long enough for the client's own consumer retries to back off.
    tokio::time::sleep(Duration::from_secs(3)).await;
    server.resume().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !a_nats.is_connected() {
        assert!(Instant::now() < deadline, "not connected again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let back = Instant::now();
    for n in 0..100 {
        a.publish(&x, line("node-a", format!("after-{n}")));
    }
    // The after- lines arrive in order, once; nothing from before the outage again (a
    // few queued away- lines may get through once the connection is back).
    let mut after = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while after.len() < 100 {
        let Ok(Some((_, l))) = tokio::time::timeout_at(deadline, at_b.next()).await else {
            panic!("{} of 100 lines after the outage: {after:?}", after.len());
        };
        assert!(!l.text.starts_with("before-"), "{} again", l.text);
        if l.text.starts_with("after-") {
            after.push(l.text);
        }
    }
    eprintln!(
        "lines flowing again {:?} after reconnecting",
        back.elapsed()
    );
    let expected: Vec<String> = (0..100).map(|n| format!("after-{n}")).collect();
    assert_eq!(after, expected);

    let mut after = Vec::new();
    while after.len() < 100 {
        let Ok(Some((_, l))) = tokio::time::timeout_at(deadline, from_c.recv()).await else {
            panic!(
                "{} of 100 lines after the outage at c: {after:?}",
                after.len()
            );
        };
        assert!(!l.text.starts_with("before-"), "{} again at c", l.text);
        if l.text.starts_with("after-") {
            after.push(l.text);
        }
    }
    assert_eq!(after, expected);
    reading.abort();
}
