//! Writes through a failover. A 3-node JetStream cluster (`sync_interval:
//! always`, the stream on all three nodes) is started here; writes go at a
//! fixed rate, and mid-burst one node is killed with `kill -9`: the
//! stream's leader, and on a fresh cluster a follower. truce is two `truce
//! ingest` replicas taking keyed `SubmitReport` calls in turn; its peer is
//! one plain JetStream client (async-nats with its defaults) publishing
//! the same payloads at the same rate. Both are measured the same way: the
//! longest call, the longest wait between two acknowledgements of one
//! writer, the calls not acknowledged, and, read back afterwards, what
//! was lost or stored twice. The election is JetStream's own: from the kill
//! until the stream's info names a new leader.

use std::{
    collections::HashMap,
    fmt::Write as _,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context;
use async_nats::jetstream;
use tokio_stream::StreamExt;
use tonic::{Code, transport::Channel};
use truce_proto::v1::ingest_service_client::IngestServiceClient;

use crate::{
    load,
    nats::{self, Cluster},
    procs::{Scratch, Truce},
    reports,
    stats::Runs,
};

/// Settings of `failover`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Writes per second: over both truce replicas, or by the one
    /// JetStream client.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Seconds of writes before the kill.
    #[arg(long, default_value_t = 5)]
    before: u64,
    /// Seconds of writes after JetStream names a new leader (after the
    /// kill, for a follower).
    #[arg(long, default_value_t = 5)]
    after: u64,
    /// Runs of each scenario.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Where the Markdown table goes.
    #[arg(long, default_value = "crates/bench/results/failover.md")]
    out: PathBuf,
}

/// Who writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Writer {
    /// Two `truce ingest` replicas, called in turn.
    Truce,
    /// One async-nats JetStream client with its default settings.
    Plain,
}

/// Which node dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Victim {
    Leader,
    Follower,
}

/// One write and its answer.
#[derive(Debug, Clone, Copy)]
struct Call {
    /// The write's number.
    n: u64,
    /// Which writer it went through (a truce replica; 0 for the plain
    /// client).
    via: usize,
    took: Duration,
    ended: Instant,
    answer: Answer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Acknowledged,
    Unavailable,
    /// Any other failure (for the plain client: a timed-out or refused
    /// publish).
    Failed,
}

/// One scenario's figures.
#[derive(Debug, Default)]
struct Figures {
    writes: f64,
    acknowledged: f64,
    unavailable: f64,
    failed: f64,
    longest_call_s: f64,
    longest_gap_s: f64,
    election_s: Option<f64>,
    lost: f64,
    doubled: f64,
}

/// Runs every scenario, prints the table and writes it to `args.out`.
pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let (binary, version) = nats::binary().map_err(|why| anyhow::anyhow!(why))?;
    let scenarios = [
        (Writer::Truce, Victim::Leader),
        (Writer::Plain, Victim::Leader),
        (Writer::Truce, Victim::Follower),
        (Writer::Plain, Victim::Follower),
    ];
    let mut results: HashMap<(Writer, Victim), Vec<Figures>> = HashMap::new();
    for run in 0..args.runs {
        for (writer, victim) in scenarios {
            eprintln!("run {}: {writer:?} writing, {victim:?} killed", run + 1);
            let figures = scenario(&binary, writer, victim, &args, run)
                .await
                .with_context(|| format!("{writer:?} writing, {victim:?} killed"))?;
            eprintln!("  {figures:?}");
            results.entry((writer, victim)).or_default().push(figures);
        }
    }
    let table = table(&scenarios, &results, &args, &version);
    println!("{table}");
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, table).with_context(|| format!("writing {}", args.out.display()))?;
    Ok(())
}

/// A fresh cluster, `writer` writing, `victim` killed mid-burst.
async fn scenario(
    binary: &std::path::Path,
    writer: Writer,
    victim: Victim,
    args: &Args,
    run: usize,
) -> anyhow::Result<Figures> {
    let mut cluster = Cluster::start(binary, nats::Sync::Always).await?;
    let url = cluster.url();
    let writers = Writers::start(writer, &url).await?;
    let watch = LeaderWatch::new(&url, writers.stream()).await?;
    let placement = watch.placement_within(Duration::from_secs(60)).await?;
    let killed = match victim {
        Victim::Leader => placement.leader.clone(),
        Victim::Follower => placement
            .followers
            .first()
            .context("the stream has no follower")?
            .clone(),
    };

    let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
    let stop_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let key_run = format!("failover-{}-{run}", std::process::id());
    let load = tokio::spawn(writers.clone().burst(
        args.rate,
        key_run.clone(),
        Arc::clone(&calls),
        Arc::clone(&stop_at),
    ));
    tokio::time::sleep(Duration::from_secs(args.before)).await;
    let at = Instant::now();
    cluster.kill(&killed).await?;
    let election = match victim {
        Victim::Leader => {
            let elected = watch.led_by_other_than(&killed, Duration::from_secs(60)).await?;
            Some(elected - at)
        }
        Victim::Follower => None,
    };
    *stop_at.lock().expect("lock") = Some(Instant::now() + Duration::from_secs(args.after));
    load.await??;
    let calls = std::mem::take(&mut *calls.lock().expect("lock"));
    writers.retry_unavailable(&key_run, &calls).await?;
    let (lost, doubled) = writers.read_back(&key_run, &calls, &watch).await?;
    let count = |answer: Answer| calls.iter().filter(|c| c.answer == answer).count() as f64;
    Ok(Figures {
        writes: calls.len() as f64,
        acknowledged: count(Answer::Acknowledged),
        unavailable: count(Answer::Unavailable),
        failed: count(Answer::Failed),
        longest_call_s: calls.iter().map(|c| c.took).max().unwrap_or_default().as_secs_f64(),
        longest_gap_s: longest_gap(&calls).as_secs_f64(),
        election_s: election.map(|e| e.as_secs_f64()),
        lost: lost as f64,
        doubled: doubled as f64,
    })
}

/// The longest wait between two acknowledgements through the same writer.
fn longest_gap(calls: &[Call]) -> Duration {
    let mut by_writer: HashMap<usize, Vec<Instant>> = HashMap::new();
    for call in calls.iter().filter(|c| c.answer == Answer::Acknowledged) {
        by_writer.entry(call.via).or_default().push(call.ended);
    }
    by_writer
        .into_values()
        .filter_map(|mut ends| {
            ends.sort();
            ends.windows(2).map(|w| w[1] - w[0]).max()
        })
        .max()
        .unwrap_or_default()
}

/// The writers of one scenario.
#[derive(Clone)]
enum Writers {
    Truce {
        _replicas: Arc<Vec<Truce>>,
        clients: Vec<IngestServiceClient<Channel>>,
        _data: Arc<Vec<Scratch>>,
    },
    Plain(jetstream::Context),
}

/// The stream the plain client writes.
const PLAIN_STREAM: &str = "REPORTS";

impl Writers {
    /// Two truce ingest replicas on the cluster at `url` (the first
    /// creates the stream), or the plain client and its stream.
    async fn start(writer: Writer, url: &str) -> anyhow::Result<Writers> {
        match writer {
            Writer::Truce => {
                let data = vec![Scratch::new("failover-ingest")?, Scratch::new("failover-ingest")?];
                let mut replicas = Vec::new();
                let mut clients = Vec::new();
                for dir in &data {
                    let replica = Truce::ingest(dir.path(), &["--log", url, "--nats-replicas", "3"]).await?;
                    let channel = load::channels(&replica.endpoint("ingest"), 1).await?.remove(0);
                    clients.push(IngestServiceClient::new(channel));
                    replicas.push(replica);
                }
                Ok(Writers::Truce {
                    _replicas: Arc::new(replicas),
                    clients,
                    _data: Arc::new(data),
                })
            }
            Writer::Plain => {
                let client = async_nats::connect(url.split(',').collect::<Vec<_>>()).await?;
                let js = jetstream::new(client);
                let config = jetstream::stream::Config {
                    name: PLAIN_STREAM.to_owned(),
                    subjects: vec!["reports.>".to_owned()],
                    storage: jetstream::stream::StorageType::File,
                    num_replicas: 3,
                    ..Default::default()
                };
                // A new cluster takes a few seconds to elect its leader.
                let deadline = Instant::now() + Duration::from_secs(60);
                while let Err(error) = js.get_or_create_stream(config.clone()).await {
                    anyhow::ensure!(Instant::now() < deadline, "the cluster never took the stream: {error}");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Ok(Writers::Plain(js))
            }
        }
    }

    /// The stream written.
    fn stream(&self) -> &'static str {
        match self {
            Writers::Truce { .. } => "TRUCE",
            Writers::Plain(_) => PLAIN_STREAM,
        }
    }

    /// Writes number `n` and says how it was answered, and through which
    /// writer.
    async fn write(&self, run: &str, n: u64) -> (usize, Answer) {
        match self {
            Writers::Truce { clients, .. } => {
                let via = n as usize % clients.len();
                let mut client = clients[via].clone();
                let answer = match client.submit_report(reports::request(run, n)).await {
                    Ok(_) => Answer::Acknowledged,
                    Err(status) if status.code() == Code::Unavailable => Answer::Unavailable,
                    Err(status) => {
                        eprintln!("  report {n}: {status:?}");
                        Answer::Failed
                    }
                };
                (via, answer)
            }
            Writers::Plain(js) => {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert(NUMBER_HEADER, n.to_string().as_str());
                let published = js
                    .publish_with_headers(nats::subject(n), headers, reports::payload(n).into())
                    .await;
                let answer = match published {
                    Ok(ack) => match ack.await {
                        Ok(_) => Answer::Acknowledged,
                        Err(_) => Answer::Failed,
                    },
                    Err(_) => Answer::Failed,
                };
                (0, answer)
            }
        }
    }

    /// Writes at `rate` per second, each write a task of its own so a held
    /// one holds up no other, until the time `stop_at` names once set.
    async fn burst(
        self,
        rate: u32,
        run: String,
        calls: Arc<Mutex<Vec<Call>>>,
        stop_at: Arc<Mutex<Option<Instant>>>,
    ) -> anyhow::Result<()> {
        let run: Arc<str> = run.into();
        let start = tokio::time::Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0u64.. {
            tokio::time::sleep_until(start + Duration::from_secs_f64(n as f64 / f64::from(rate))).await;
            if stop_at.lock().expect("lock").is_some_and(|at| Instant::now() >= at) {
                break;
            }
            let (writers, run, calls) = (self.clone(), Arc::clone(&run), Arc::clone(&calls));
            tasks.spawn(async move {
                let began = Instant::now();
                let (via, answer) = writers.write(&run, n).await;
                let ended = Instant::now();
                calls.lock().expect("lock").push(Call {
                    n,
                    via,
                    took: ended - began,
                    ended,
                    answer,
                });
            });
        }
        while let Some(done) = tasks.join_next().await {
            done?;
        }
        Ok(())
    }

    /// Submits every report not acknowledged again with its key until it
    /// is, as a client told to retry does (truce only: the plain client's
    /// publishes carry no key to retry with).
    async fn retry_unavailable(&self, run: &str, calls: &[Call]) -> anyhow::Result<()> {
        if let Writers::Plain(_) = self {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        for n in calls.iter().filter(|c| c.answer != Answer::Acknowledged).map(|c| c.n) {
            while self.write(run, n).await.1 != Answer::Acknowledged {
                anyhow::ensure!(Instant::now() < deadline, "report {n} was never acknowledged");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// Reads the log back: how many acknowledged writes it lacks, and how
    /// many it holds more than once.
    async fn read_back(&self, run: &str, calls: &[Call], watch: &LeaderWatch) -> anyhow::Result<(usize, usize)> {
        match self {
            Writers::Truce { clients, .. } => {
                // Every acknowledged key, submitted again, must be answered
                // as a report already stored; each entry is keyed, so the
                // stream holds one message per key written.
                let mut lost = 0;
                for call in calls.iter().filter(|c| c.answer == Answer::Acknowledged) {
                    let mut client = clients[call.via].clone();
                    let deadline = Instant::now() + Duration::from_secs(30);
                    let replayed = loop {
                        match client.submit_report(reports::request(run, call.n)).await {
                            Ok(answer) => break answer.into_inner().replayed,
                            Err(status) if status.code() == Code::Unavailable && Instant::now() < deadline => {
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                            Err(status) => anyhow::bail!("reading report {} back: {status:?}", call.n),
                        }
                    };
                    if !replayed {
                        lost += 1;
                    }
                }
                let stored = watch.messages().await?;
                Ok((lost, (stored as usize).saturating_sub(calls.len())))
            }
            Writers::Plain(js) => {
                let counts = plain_numbers(js).await?;
                let lost = calls
                    .iter()
                    .filter(|c| c.answer == Answer::Acknowledged && !counts.contains_key(&c.n))
                    .count();
                let doubled = counts.values().map(|&c| c.saturating_sub(1)).sum();
                Ok((lost, doubled))
            }
        }
    }
}

/// The header carrying a plain write's number.
const NUMBER_HEADER: &str = "Bench-Number";

/// How many times the plain stream holds each write number, asked again
/// while the cluster is still recovering from the kill.
async fn plain_numbers(js: &jetstream::Context) -> anyhow::Result<HashMap<u64, usize>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match read_plain_numbers(js).await {
            Err(error) if Instant::now() < deadline => {
                eprintln!("  reading the stream back: {error:#}; again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            read => return read,
        }
    }
}

async fn read_plain_numbers(js: &jetstream::Context) -> anyhow::Result<HashMap<u64, usize>> {
    let stream = js.get_stream(PLAIN_STREAM).await?;
    let total = stream.cached_info().state.messages;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
        .await?;
    let mut messages = consumer.messages().await?;
    let mut counts = HashMap::new();
    for _ in 0..total {
        let message = tokio::time::timeout(Duration::from_secs(30), messages.next())
            .await
            .context("reading the stream back stalled")?
            .context("the stream ended")??;
        let n: u64 = message
            .headers
            .as_ref()
            .and_then(|h| h.get(NUMBER_HEADER))
            .and_then(|v| v.as_str().parse().ok())
            .context("a message without its number")?;
        *counts.entry(n).or_default() += 1;
    }
    Ok(counts)
}

/// Who leads a stream, as JetStream says, asked through a client of its
/// own with short timeouts so that asking during an election is quick.
struct LeaderWatch {
    context: jetstream::Context,
    stream: &'static str,
}

/// A stream's leader and followers, by server name.
struct Placement {
    leader: String,
    followers: Vec<String>,
}

impl LeaderWatch {
    async fn new(url: &str, stream: &'static str) -> anyhow::Result<LeaderWatch> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(1))
            .connect(url.split(',').collect::<Vec<_>>())
            .await?;
        let context = jetstream::context::ContextBuilder::new()
            .timeout(Duration::from_millis(250))
            .build(client);
        Ok(LeaderWatch { context, stream })
    }

    async fn info(&self) -> Option<jetstream::stream::Info> {
        let stream = self.context.get_stream(self.stream).await.ok()?;
        Some(stream.cached_info().clone())
    }

    async fn placement(&self) -> Option<Placement> {
        let cluster = self.info().await?.cluster?;
        Some(Placement {
            leader: cluster.leader?,
            followers: cluster.replicas.into_iter().map(|r| r.name).collect(),
        })
    }

    /// Where the stream is, once it has a leader.
    async fn placement_within(&self, within: Duration) -> anyhow::Result<Placement> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(placement) = self.placement().await {
                return Ok(placement);
            }
            anyhow::ensure!(Instant::now() < deadline, "the stream has no leader");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// When JetStream first named a leader other than `not`.
    async fn led_by_other_than(&self, not: &str, within: Duration) -> anyhow::Result<Instant> {
        let deadline = Instant::now() + within;
        loop {
            if self.placement().await.is_some_and(|p| p.leader != not) {
                return Ok(Instant::now());
            }
            anyhow::ensure!(Instant::now() < deadline, "no new leader within {within:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Messages in the stream.
    async fn messages(&self) -> anyhow::Result<u64> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(info) = self.info().await {
                return Ok(info.state.messages);
            }
            anyhow::ensure!(Instant::now() < deadline, "the stream did not answer");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The Markdown table of every scenario.
fn table(
    scenarios: &[(Writer, Victim)],
    results: &HashMap<(Writer, Victim), Vec<Figures>>,
    args: &Args,
    version: &str,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Writes through a failover\n\n\
         Produced by `truce-bench failover --rate {} --runs {}`: a 3-node JetStream cluster ({version}, \
         `sync_interval: always`, the stream on all three nodes) on this machine, writes at {} per second, \
         one node killed with `kill -9` {} s into the burst; writes go on until {} s after JetStream names \
         a new leader (after the kill, for a follower). truce: two `truce ingest` replicas, keyed \
         `SubmitReport` calls in turn; a call answered `UNAVAILABLE` is retried with its key after the \
         burst. JetStream: one async-nats client with its defaults publishing the same payloads. Times in \
         seconds; with several runs, median (min–max).\n",
        args.rate, args.runs, args.rate, args.before, args.after
    );
    let _ = writeln!(
        out,
        "| writer | node killed | writes | acknowledged | UNAVAILABLE / failed | longest call | \
         longest gap between acknowledgements | JetStream's election | lost | stored twice |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for key in scenarios {
        let Some(runs) = results.get(key) else { continue };
        let figure = |f: &dyn Fn(&Figures) -> f64| {
            let mut r = Runs::default();
            for figures in runs {
                r.push(f(figures));
            }
            r
        };
        let writer = match key.0 {
            Writer::Truce => "truce (2 ingest replicas)",
            Writer::Plain => "JetStream client",
        };
        let victim = match key.1 {
            Victim::Leader => "stream leader",
            Victim::Follower => "follower",
        };
        let election = if key.1 == Victim::Leader {
            figure(&|f| f.election_s.unwrap_or(f64::NAN)).show(1).to_string()
        } else {
            "–".to_owned()
        };
        let _ = writeln!(
            out,
            "| {writer} | {victim} | {} | {} | {} | {} | {} | {election} | {} | {} |",
            figure(&|f| f.writes).show(0),
            figure(&|f| f.acknowledged).show(0),
            figure(&|f| f.unavailable + f.failed).show(0),
            figure(&|f| f.longest_call_s).show(2),
            figure(&|f| f.longest_gap_s).show(2),
            figure(&|f| f.lost).show(0),
            figure(&|f| f.doubled).show(0),
        );
    }
    out
}
