//! Writes through a failover, from the callers' side: a 3-node JetStream
//! cluster syncing every message to disk, two ingest replicas taking keyed
//! reports at a steady rate (a third of them joining the incident the
//! report before opened, on the other replica), and a node killed with
//! `kill -9` mid-burst. Every call is answered within 2 s (acknowledged,
//! or `UNAVAILABLE`, which the caller retries with the same key); both
//! replicas acknowledge again within JetStream's own election plus 1 s
//! when the stream's leader dies, and stop for no more than 1.5 s when a
//! follower does; nothing is lost or stored twice, a report said not
//! stored was not, and each joining report is in the incident of the one
//! it joins.
//!
//! The cluster is `nats-server` processes this test starts on free
//! loopback ports (`nats-server` from `tests/run`). The tests take turns:
//! two clusters at once on a 2-core machine would measure each other.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tonic::Code;
use truce_ingest::{IngestConfig, LogLocation};
use truce_jetstream::JetStreamSettings;
use truce_proto::v1::{self, ingest_service_client::IngestServiceClient};
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

/// How long a call may take before the test calls it hung: well past the
/// bound, so that a broken bound fails the assertion on it, not this.
const CALL_DEADLINE: Duration = Duration::from_secs(15);

type Client = IngestServiceClient<tonic::transport::Channel>;

/// An acknowledgement.
#[derive(Debug, Clone, PartialEq)]
struct Acked {
    report_id: String,
    incident_id: String,
    replayed: bool,
}

/// One call's answer and how long it took.
#[derive(Debug, Clone)]
struct Call {
    n: u32,
    replica: usize,
    ended: Instant,
    took: Duration,
    /// The acknowledgement, or the UNAVAILABLE status's message.
    answer: Result<Acked, String>,
}

/// The calls made so far, shared with the tasks making them.
type Calls = Arc<Mutex<Vec<Call>>>;

fn key(n: u32) -> String {
    format!("failover-{n}")
}

/// Whether report `n` joins the incident report `n - 1` opened: a third of
/// them, each sent to the other replica than the report it joins.
fn joins_previous(n: u32) -> bool {
    n % 3 == 2
}

/// Report `n`: its own incident, or (see [`joins_previous`]) the same
/// kind, place and time as report `n - 1`.
fn report(n: u32) -> v1::Report {
    let mut report = numbered_report(n);
    if joins_previous(n) {
        report.occurred_at = numbered_report(n - 1).occurred_at;
    }
    report
}

/// Submits report `n` with its key once, within [`CALL_DEADLINE`]: its
/// acknowledgement, or the UNAVAILABLE status's message (any other status
/// fails the test).
async fn submit(client: &mut Client, n: u32) -> Result<Acked, String> {
    let call = client.submit_report(request(&key(n), report(n)));
    match tokio::time::timeout(CALL_DEADLINE, call).await {
        Err(_) => panic!("{}: no answer within {CALL_DEADLINE:?}", key(n)),
        Ok(Ok(answer)) => {
            let answer = answer.into_inner();
            Ok(Acked {
                report_id: answer.report_id,
                incident_id: answer.incident_id,
                replayed: answer.replayed,
            })
        }
        Ok(Err(status)) => {
            assert_eq!(status.code(), Code::Unavailable, "{}: {status:?}", key(n));
            Err(status.message().to_owned())
        }
    }
}

/// Whether an UNAVAILABLE message says the write was not stored (and so
/// cannot be found by a retry), rather than that it may be.
fn says_not_stored(message: &str) -> bool {
    !message.contains("may or may not") && (message.contains("not stored") || message.contains("nothing was"))
}

/// Submits report `n` to `replicas[n % 2]` every 1/RATE s until `stop`
/// says so; each call is a task of its own so that a held call holds up
/// no other. Returns when the last call is answered.
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
            let began = Instant::now();
            let answer = submit(&mut client, n).await;
            let ended = Instant::now();
            calls.lock().expect("lock").push(Call {
                n,
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

/// The longest wait of `replica` for an acknowledgement: between two, and
/// from its last to `end` (the end of the burst), so a replica that stops
/// acknowledging shows its whole silence.
fn longest_gap(calls: &[Call], replica: usize, end: Instant) -> Duration {
    let mut acknowledged: Vec<Instant> = calls
        .iter()
        .filter(|c| c.replica == replica && c.answer.is_ok())
        .map(|c| c.ended)
        .collect();
    acknowledged.sort();
    acknowledged.push(end.max(acknowledged.last().copied().unwrap_or(end)));
    acknowledged.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default()
}

/// Retries report `n` with its key until acknowledged, as a client told
/// `UNAVAILABLE` should, after `first` (the burst's own answer). While
/// every answer so far said the report was not stored, an acknowledgement
/// saying it was already there would make one of them false.
async fn retried(client: &mut Client, n: u32, first: &str) -> Acked {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut absent = says_not_stored(first);
    loop {
        match submit(client, n).await {
            Ok(acked) => {
                assert!(
                    !(absent && acked.replayed),
                    "{}: answered \"not stored\", then found stored: {acked:?}",
                    key(n)
                );
                return acked;
            }
            Err(message) if Instant::now() < deadline => {
                absent &= says_not_stored(&message);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(message) => panic!("{}: still {message}", key(n)),
        }
    }
}

/// Retries every `UNAVAILABLE` call with its key until acknowledged, then
/// reads the log back: each key is one report, the same whichever answer
/// told it; the log holds those reports and nothing else; each joining
/// report is in the incident of the report it joins.
async fn nothing_lost_or_doubled(calls: &[Call], replicas: [SocketAddr; 2]) {
    let mut clients = [ingest_client(replicas[0]).await, ingest_client(replicas[1]).await];
    let mut acked: BTreeMap<u32, Acked> = BTreeMap::new();
    for call in calls {
        let answer = match &call.answer {
            Ok(answer) => answer.clone(),
            Err(message) => retried(&mut clients[call.replica], call.n, message).await,
        };
        assert!(acked.insert(call.n, answer).is_none(), "{} called twice", key(call.n));
    }
    let mut by_report: BTreeMap<&str, u32> = BTreeMap::new();
    for (n, answer) in &acked {
        if let Some(other) = by_report.insert(&answer.report_id, *n) {
            panic!("{} and {} answered with one report", key(other), key(*n));
        }
    }
    for (n, answer) in &acked {
        if joins_previous(*n)
            && let Some(joined) = acked.get(&(n - 1))
        {
            assert_eq!(
                answer.incident_id,
                joined.incident_id,
                "{} did not join the incident of {}",
                key(*n),
                key(n - 1)
            );
        }
    }
    let verified = verify_through(env!("CARGO_BIN_EXE_truce-testbed"), replicas[0]).await;
    assert!(
        verified.contains(&format!("verified {} entries", acked.len())),
        "{} keys: {verified}",
        acked.len()
    );
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
    /// UNAVAILABLE answers, by what they said.
    unavailable: BTreeMap<String, usize>,
    calls: usize,
}

fn figures(calls: &[Call]) -> Figures {
    let end = calls.iter().map(|c| c.ended).max().unwrap_or_else(Instant::now);
    let mut unavailable = BTreeMap::new();
    for message in calls.iter().filter_map(|c| c.answer.as_ref().err()) {
        // The reason, without the log's own words in parentheses.
        let gist = message.split(" (").next().unwrap_or(message).to_owned();
        *unavailable.entry(gist).or_default() += 1;
    }
    Figures {
        longest_call: calls.iter().map(|c| c.took).max().unwrap_or_default(),
        longest_gaps: [longest_gap(calls, 0, end), longest_gap(calls, 1, end)],
        unavailable,
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
    let elected_at = Instant::now();
    *elected.lock().expect("lock") = Some(elected_at);
    let election = elected_at - at;
    load.await.expect("the burst");

    let calls = std::mem::take(&mut *calls.lock().expect("lock"));
    let seen = figures(&calls);
    eprintln!(
        "leader {} killed, {} elected after {election:?}: {} calls, longest call {:?}, longest waits for an \
         acknowledgement {:?}, UNAVAILABLE {:?}",
        before.leader, after.leader, seen.calls, seen.longest_call, seen.longest_gaps, seen.unavailable
    );
    assert!(seen.longest_call <= ANSWER_BOUND, "a call took {:?}", seen.longest_call);
    for replica in 0..2 {
        assert!(
            acknowledged_since(&calls, replica, elected_at) > 0,
            "replica {replica} acknowledged nothing after the election"
        );
    }
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

/// The longest wait for an acknowledgement allowed when a follower dies.
const FOLLOWER_GAP: Duration = Duration::from_millis(1500);

/// A follower killed mid-burst, the one node one replica is connected to:
/// every call is answered within 2 s and acknowledgements never stop for
/// 1.5 s; every report is stored once.
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
        "follower {follower} killed (leader {}): {} calls, longest call {:?}, longest waits for an \
         acknowledgement {:?}, UNAVAILABLE {:?}",
        placement.leader, seen.calls, seen.longest_call, seen.longest_gaps, seen.unavailable
    );
    assert!(seen.longest_call <= ANSWER_BOUND, "a call took {:?}", seen.longest_call);
    // No election: a pause of a few hundred milliseconds on a loaded
    // machine, not the 5 to 10 s a request left to async-nats waits.
    for gap in seen.longest_gaps {
        assert!(gap <= FOLLOWER_GAP, "acknowledgements stopped for {gap:?}");
    }
    for replica in 0..2 {
        assert!(
            acknowledged_since(&calls, replica, at) > 0,
            "replica {replica} acknowledged nothing after the kill"
        );
    }
    nothing_lost_or_doubled(&calls, replicas).await;
    first.stop().await;
    second.stop().await;
    cluster.stop().await;
}
