//! A model-checking stress test of `Subscribe`, in the manner of etcd's
//! robustness suite: random writes, random filters, random client
//! disconnects and kill -9 of query processes; every stream is recorded
//! and checked against a model computed from the log itself: ordered,
//! unique, gapless, resumable, filter-correct, and consistent with its
//! progress messages.

use std::{
    ffi::OsString,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio_stream::StreamExt;
use truce_domain::{event::RecordedEvent, filter::Filter};
use truce_proto::{
    convert::event_from_wire,
    v1::{self, read_log_response::Kind as LogKind, subscribe_request::Start, subscribe_response::Kind},
};
use truce_tests::{PATIENCE, Process, ingest_client, request, start_ingest, stream, time};

/// SplitMix64: a small, seeded generator, so a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const FILTERS: &[&str] = &[
    "",
    "category = AIR_STRIKE",
    "area = \"Rafah\" OR reporter = \"hamas\"",
    "killed_high >= 10",
    "killed_high < 10",
    "report_count = 1",
    "NOT reporter = \"hamas\"",
    "category = SHELLING AND zone = AT_LINE",
];

fn random_report(rng: &mut Rng) -> v1::Report {
    let categories = [
        v1::Category::AirStrike,
        v1::Category::Shelling,
        v1::Category::LineCrossing,
    ];
    let areas = ["Rafah", "Khan Younis", "northern Gaza"];
    let parties = ["idf", "hamas", "gaza-health-ministry"];
    let zones = [
        v1::Zone::AtLine,
        v1::Zone::PalestinianControlled,
        v1::Zone::IsraeliControlled,
    ];
    let low = rng.below(15) as u32;
    let high = low + rng.below(10) as u32;
    v1::Report {
        reporting_party: rng.pick(&parties).to_string(),
        occurred_at: Some(prost_types::Timestamp {
            seconds: time("2025-11-22T00:00:00Z").seconds + rng.below(3 * 86_400) as i64,
            nanos: 0,
        }),
        occurred_precision: v1::TimePrecision::Hour as i32,
        location: Some(v1::Location {
            point: None,
            area: rng.pick(&areas).to_string(),
            zone: *rng.pick(&zones) as i32,
            precision: v1::LocationPrecision::Area as i32,
        }),
        category: *rng.pick(&categories) as i32,
        summary: format!("random report {}", rng.next()),
        casualties: vec![v1::CasualtyClaim {
            group: v1::CasualtyGroup::Unknown as i32,
            killed: Some(v1::CountRange { low, best: None, high }),
            injured: None,
            claimed_by: rng.pick(&parties).to_string(),
        }],
        ..Default::default()
    }
}

/// What one subscriber saw, across every reconnect.
#[derive(Debug, Default)]
struct Record {
    filter: &'static str,
    start: u64,
    /// (position, true for a change / false for leaving the filter)
    seen: Vec<(u64, bool)>,
    /// Progress claims: (heartbeat position, how many entries seen before it).
    progress: Vec<(u64, usize)>,
    reconnects: usize,
}

/// The query processes, by current address; a killed one is restarted on
/// a new port.
type Addresses = Arc<Mutex<Vec<SocketAddr>>>;

async fn spawn_query(upstream: SocketAddr, dir: &std::path::Path) -> Process {
    let args: Vec<OsString> = vec![
        "query".into(),
        "--insecure-loopback".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--upstream".into(),
        format!("http://{upstream}").into(),
        "--data-dir".into(),
        dir.into(),
    ];
    Process::spawn(env!("CARGO_BIN_EXE_truce-testbed"), &args, &["query"]).await
}

/// One subscriber: subscribes, reads a random while, disconnects, resumes
/// from its last processed token on a random query process, until it has
/// everything up to the final head.
async fn subscriber(seed: u64, addresses: Addresses, final_head: Arc<tokio::sync::OnceCell<u64>>) -> Record {
    let mut rng = Rng(seed);
    let filter = *rng.pick(FILTERS);
    let mut record = Record {
        filter,
        ..Default::default()
    };
    let mut start = match rng.below(3) {
        0 => Start::FromBeginning(true),
        1 => Start::FromNow(true),
        _ => Start::AfterPosition(rng.below(50)),
    };
    let mut started = false;
    loop {
        let address = *rng.pick(&addresses.lock().expect("addresses").clone());
        let Ok(channel) = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .expect("an endpoint")
            .connect()
            .await
        else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let mut client = v1::query_service_client::QueryServiceClient::new(channel);
        let Ok(response) = client.subscribe(stream::request(filter, start.clone())).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let mut changes = response.into_inner();
        let budget = 20 + rng.below(300);
        let mut taken = 0;
        loop {
            let message = match tokio::time::timeout(PATIENCE, changes.next())
                .await
                .expect("stream stalled")
            {
                Some(Ok(message)) => message.kind.expect("a message with a kind"),
                // The process was killed or the stream ended: resume.
                Some(Err(_)) | None => break,
            };
            let (position, token) = match stream::checkpoint(&message) {
                Some((p, t)) => (p, t.to_owned()),
                None => continue,
            };
            match &message {
                Kind::Subscribed(_) if !started => {
                    record.start = position;
                    started = true;
                }
                Kind::Change(_) => record.seen.push((position, true)),
                Kind::LeftFilter(_) => record.seen.push((position, false)),
                Kind::Heartbeat(_) => record.progress.push((position, record.seen.len())),
                _ => {}
            }
            // Processed: from here on, resume after it.
            start = Start::ResumeToken(token);
            if final_head.get().is_some_and(|head| position >= *head) {
                return record;
            }
            taken += 1;
            if taken >= budget {
                break; // a random disconnect
            }
        }
        record.reconnects += 1;
    }
}

/// What a subscriber with `filter` from `start` must see, from the log.
fn expected(events: &[RecordedEvent], filter: &Filter, start: u64) -> Vec<(u64, bool)> {
    events
        .iter()
        .filter(|e| e.position.0 > start)
        .filter_map(|e| {
            if filter.matches(e.incident()) {
                return Some((e.position.0, true));
            }
            let previous = e.previous_position()?;
            let before = events[(previous.0 - 1) as usize].incident();
            (filter.expr().is_some() && filter.matches(before)).then_some((e.position.0, false))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stream_matches_the_model_through_disconnects_and_kills() {
    let seed = std::env::var("TRUCE_MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20251122);
    eprintln!("model seed {seed} (set TRUCE_MODEL_SEED to replay)");
    let mut rng = Rng(seed);
    let ingest_dir = tempfile::tempdir().unwrap();
    let replicas = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let ingest_server = start_ingest(ingest_dir.path()).await;
    let mut processes = vec![
        spawn_query(ingest_server.addr, replicas[0].path()).await,
        spawn_query(ingest_server.addr, replicas[1].path()).await,
    ];
    let addresses: Addresses = Arc::new(Mutex::new(processes.iter().map(|p| p.addr("query")).collect()));
    let final_head = Arc::new(tokio::sync::OnceCell::new());

    let subscribers: Vec<_> = (0..8)
        .map(|_| tokio::spawn(subscriber(rng.next(), Arc::clone(&addresses), Arc::clone(&final_head))))
        .collect();
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let mut rng = Rng(rng.next());
            let addr = ingest_server.addr;
            tokio::spawn(async move {
                let mut ingest = ingest_client(addr).await;
                for _ in 0..300 {
                    let report = random_report(&mut rng);
                    ingest.submit_report(request("", report)).await.unwrap();
                    if rng.below(10) == 0 {
                        tokio::time::sleep(Duration::from_millis(rng.below(20))).await;
                    }
                }
            })
        })
        .collect();
    // Chaos: kill -9 a query process twice during the writes, and restart
    // it on its replica.
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(300 + rng.below(500))).await;
        let victim = rng.below(2) as usize;
        processes[victim].kill().await;
        processes[victim] = spawn_query(ingest_server.addr, replicas[victim].path()).await;
        addresses.lock().unwrap()[victim] = processes[victim].addr("query");
    }
    for writer in writers {
        writer.await.unwrap();
    }

    // The model: the log as the ingest service holds it.
    let mut log = v1::log_service_client::LogServiceClient::new(
        tonic::transport::Channel::from_shared(format!("http://{}", ingest_server.addr))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let mut entries = log
        .read_log(v1::ReadLogRequest {
            from_position: 1,
            incarnation: String::new(),
            until_position: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let Some(LogKind::Info(info)) = entries.next().await.unwrap().unwrap().kind else {
        panic!("no log info");
    };
    let head = info.head_position;
    assert_eq!(head, 1200);
    let mut events = Vec::new();
    while (events.len() as u64) < head {
        if let Some(LogKind::Entry(entry)) = entries.next().await.unwrap().unwrap().kind {
            events.push(event_from_wire(entry.position, &entry.event).unwrap());
        }
    }
    final_head.set(head).unwrap();

    let mut reconnects = 0;
    let mut departures = 0;
    for subscriber in subscribers {
        let record = tokio::time::timeout(Duration::from_secs(60), subscriber)
            .await
            .expect("a subscriber never caught up")
            .unwrap();
        let filter = Filter::parse(record.filter).unwrap();
        let want = expected(&events, &filter, record.start);
        // Ordered, unique, gapless and filter-correct: exactly the model.
        assert_eq!(
            record.seen, want,
            "filter {:?} from {}: the stream differs from the model",
            record.filter, record.start
        );
        // Every progress claim holds: everything expected up to its
        // position had been delivered before it.
        for (position, seen_before) in &record.progress {
            let due = want.iter().filter(|(p, _)| p <= position).count();
            assert_eq!(*seen_before, due, "heartbeat at {position} claims too much");
        }
        reconnects += record.reconnects;
        departures += record.seen.iter().filter(|(_, change)| !change).count();
    }
    eprintln!("8 subscribers, {reconnects} reconnects, {departures} departures checked over {head} events");
    assert!(reconnects >= 8, "the test should exercise resumes");
    assert!(departures > 0, "the test should exercise leaving the filter");
    drop(processes);
    ingest_server.stop().await;
}
