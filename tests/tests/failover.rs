//! Writes through a failover, from the callers' side: a 3-node JetStream
//! cluster, two ingest replicas taking keyed reports at a steady rate, and
//! a node killed with `kill -9` mid-burst. Every call is answered within
//! 2 s (acknowledged, or `UNAVAILABLE`, which the caller retries with the
//! same key); acknowledgements stop no longer than JetStream's own
//! election plus 1 s when the stream's leader dies, and not at all when a
//! follower does; nothing is lost or stored twice.
//!
//! The cluster is `nats-server` processes this test starts on free
//! loopback ports (`nats-server` from `tests/run`). The tests take turns:
//! two clusters at once on a 2-core machine would measure each other.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tonic::Code;
use truce_ingest::{IngestConfig, LogLocation};
use truce_jetstream::JetStreamSettings;
use truce_tests::{
    Running, ingest_client,
    nats::{Cluster, StreamWatch, verify_through},
    numbered_report, request, start_ingest_with,
};

/// One cluster at a time.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Reports per second, over both replicas.
const RATE: u32 = 40;

/// What every caller is promised.
const ANSWER_BOUND: Duration = Duration::from_secs(2);

/// One call's answer and how long it took.
#[derive(Debug, Clone)]
struct Call {
    key: String,
    replica: usize,
    ended: Instant,
    took: Duration,
    /// The report id, or the status code.
    answer: Result<String, Code>,
}

/// The calls made so far, shared with the tasks making them.
type Calls = Arc<Mutex<Vec<Call>>>;

/// Submits report `n` to `replicas[n % 2]` every 1/RATE s until `stop`
/// says so; each call is a task of its own so that a held call holds up
/// no other.
async fn burst(replicas: [SocketAddr; 2], calls: Calls, stop: impl Fn(&[Call]) -> bool) {
    let clients = [ingest_client(replicas[0]).await, ingest_client(replicas[1]).await];
    let start = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0u32.. {
        tokio::time::sleep_until(start + Duration::from_secs_f64(f64::from(n) / f64::from(RATE))).await;
        if stop(&calls.lock().expect("lock")) {
            break;
        }
        let replica = n as usize % 2;
        let mut client = clients[replica].clone();
        let calls = Arc::clone(&calls);
        tasks.spawn(async move {
            let key = format!("failover-{n}");
            let began = Instant::now();
            let answer = client
                .submit_report(request(&key, numbered_report(n)))
                .await
                .map(|r| r.into_inner().report_id)
                .map_err(|status| {
                    assert_eq!(status.code(), Code::Unavailable, "{key}: {status:?}");
                    status.code()
                });
            let ended = Instant::now();
            calls.lock().expect("lock").push(Call {
                key,
                replica,
                ended,
                took: ended - began,
                answer,
            });
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("a call panicked");
    }
}

/// The longest wait between two acknowledgements of `replica`.
fn longest_gap(calls: &[Call], replica: usize) -> Duration {
    let mut acknowledged: Vec<Instant> = calls
        .iter()
        .filter(|c| c.replica == replica && c.answer.is_ok())
        .map(|c| c.ended)
        .collect();
    acknowledged.sort();
    acknowledged.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default()
}

/// Retries every `UNAVAILABLE` call with its key until acknowledged, then
/// reads the log back: each key is one report, the same whichever answer
/// told it, and the log holds those reports and nothing else.
async fn nothing_lost_or_doubled(calls: &[Call], replicas: [SocketAddr; 2]) {
    let mut ids: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for call in calls {
        let id = match &call.answer {
            Ok(id) => id.clone(),
            Err(_) => {
                let n: u32 = call.key.trim_start_matches("failover-").parse().expect("n");
                let mut client = ingest_client(replicas[call.replica]).await;
                retried(&mut client, &call.key, n).await
            }
        };
        ids.entry(&call.key).or_default().insert(id);
    }
    let doubled: Vec<_> = ids.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(doubled.is_empty(), "keys answered with two reports: {doubled:?}");
    let distinct: BTreeSet<&String> = ids.values().flatten().collect();
    assert_eq!(distinct.len(), ids.len(), "two keys answered with one report");
    let verified = verify_through(env!("CARGO_BIN_EXE_truce-testbed"), replicas[0]).await;
    assert!(
        verified.contains(&format!("verified {} entries", ids.len())),
        "{} keys: {verified}",
        ids.len()
    );
}

/// Submits report `n` with `key` until it is acknowledged, as a client
/// told `UNAVAILABLE` should.
async fn retried(
    client: &mut truce_proto::v1::ingest_service_client::IngestServiceClient<tonic::transport::Channel>,
    key: &str,
    n: u32,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client.submit_report(request(key, numbered_report(n))).await {
            Ok(answer) => return answer.into_inner().report_id,
            Err(status) if status.code() == Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("{key}: {status:?}"),
        }
    }
}

async fn ingest_on(settings: JetStreamSettings) -> (Running, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("dir");
    let running = start_ingest_with(IngestConfig {
        data_dir: dir.path().to_owned(),
        log: LogLocation::JetStream(settings),
        ..IngestConfig::default()
    })
    .await;
    (running, dir)
}

/// What a burst showed.
struct Figures {
    longest_call: Duration,
    longest_gaps: [Duration; 2],
    unavailable: usize,
    calls: usize,
}

fn figures(calls: &[Call]) -> Figures {
    Figures {
        longest_call: calls.iter().map(|c| c.took).max().unwrap_or_default(),
        longest_gaps: [longest_gap(calls, 0), longest_gap(calls, 1)],
        unavailable: calls.iter().filter(|c| c.answer.is_err()).count(),
        calls: calls.len(),
    }
}

/// Acknowledgements by `replica` of calls that ended after `since`.
fn acknowledged_since(calls: &[Call], replica: usize, since: Instant) -> usize {
    calls
        .iter()
        .filter(|c| c.replica == replica && c.answer.is_ok() && c.ended > since)
        .count()
}

/// The stream's leader killed mid-burst: callers are answered within 2 s
/// throughout, both replicas acknowledge again within 1 s of JetStream's
/// own new leader, and every report is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_stream_leader_answers_every_call_within_2_s_and_resumes_after_the_election() {
    let _turn = TURN.lock().await;
    let dir = tempfile::tempdir().expect("dir");
    let mut cluster = Cluster::start(dir.path()).await;
    let settings = cluster.stream().await;
    let watch = StreamWatch::new(&settings.url, &settings.stream).await;
    let before = watch.placement_led_by_other_than("", Duration::from_secs(30)).await;
    let (first, _first_dir) = ingest_on(settings.clone()).await;
    let (second, _second_dir) = ingest_on(settings.clone()).await;
    let replicas = [first.addr, second.addr];

    let calls: Calls = Arc::default();
    let elected: Arc<Mutex<Option<Instant>>> = Arc::default();
    let load = tokio::spawn(burst(replicas, Arc::clone(&calls), {
        let elected = Arc::clone(&elected);
        move |calls| {
            // Until both replicas have acknowledged after the election,
            // and 2 s more.
            elected.lock().expect("lock").is_some_and(|at| {
                at.elapsed() > Duration::from_secs(40)
                    || (at.elapsed() > Duration::from_secs(2) && (0..2).all(|r| acknowledged_since(calls, r, at) > 0))
            })
        }
    }));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let at = Instant::now();
    cluster.node(&before.leader).kill().await;
    let after = watch
        .placement_led_by_other_than(&before.leader, Duration::from_secs(40))
        .await;
    *elected.lock().expect("lock") = Some(Instant::now());
    let election = at.elapsed();
    load.await.expect("the burst");

    let calls = std::mem::take(&mut *calls.lock().expect("lock"));
    let seen = figures(&calls);
    eprintln!(
        "leader {} killed, {} elected after {election:?}: {} calls, {} UNAVAILABLE, longest call {:?}, \
         longest gaps between acknowledgements {:?}",
        before.leader, after.leader, seen.calls, seen.unavailable, seen.longest_call, seen.longest_gaps
    );
    assert!(seen.longest_call <= ANSWER_BOUND, "a call took {:?}", seen.longest_call);
    for gap in seen.longest_gaps {
        assert!(
            gap <= election + Duration::from_secs(1),
            "acknowledgements stopped for {gap:?}; JetStream elected a new leader in {election:?}"
        );
    }
    nothing_lost_or_doubled(&calls, replicas).await;
    first.stop().await;
    second.stop().await;
    cluster.stop().await;
}

/// A follower killed mid-burst, the one node one replica is connected to:
/// no call takes over 1 s and acknowledgements never stop for 1 s; every
/// report is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_a_follower_does_not_stall_writes() {
    let _turn = TURN.lock().await;
    let dir = tempfile::tempdir().expect("dir");
    let mut cluster = Cluster::start(dir.path()).await;
    let settings = cluster.stream().await;
    let watch = StreamWatch::new(&settings.url, &settings.stream).await;
    let placement = watch.placement_led_by_other_than("", Duration::from_secs(30)).await;
    let follower = placement.followers[0].clone();
    // The first replica knows only the follower (and learns the others
    // from it), so its connection dies with it.
    let (first, _first_dir) = ingest_on(JetStreamSettings {
        url: cluster.node(&follower).url(),
        ..settings.clone()
    })
    .await;
    let (second, _second_dir) = ingest_on(settings.clone()).await;
    let replicas = [first.addr, second.addr];

    let calls: Calls = Arc::default();
    let killed: Arc<Mutex<Option<Instant>>> = Arc::default();
    let load = tokio::spawn(burst(replicas, Arc::clone(&calls), {
        let killed = Arc::clone(&killed);
        move |_| {
            killed
                .lock()
                .expect("lock")
                .is_some_and(|at| at.elapsed() > Duration::from_secs(5))
        }
    }));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let at = Instant::now();
    cluster.node(&follower).kill().await;
    *killed.lock().expect("lock") = Some(at);
    load.await.expect("the burst");

    let calls = std::mem::take(&mut *calls.lock().expect("lock"));
    let seen = figures(&calls);
    eprintln!(
        "follower {follower} killed (leader {}): {} calls, {} UNAVAILABLE, longest call {:?}, \
         longest gaps between acknowledgements {:?}",
        placement.leader, seen.calls, seen.unavailable, seen.longest_call, seen.longest_gaps
    );
    assert!(
        seen.longest_call <= Duration::from_secs(1),
        "a call took {:?}",
        seen.longest_call
    );
    for gap in seen.longest_gaps {
        assert!(gap <= Duration::from_secs(1), "acknowledgements stopped for {gap:?}");
    }
    for replica in 0..2 {
        assert!(acknowledged_since(&calls, replica, at) > 0, "replica {replica} stopped");
    }
    nothing_lost_or_doubled(&calls, replicas).await;
    first.stop().await;
    second.stop().await;
    cluster.stop().await;
}
