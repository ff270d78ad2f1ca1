//! End-to-end delivery: many subscriptions, one writer at a fixed rate, and
//! the time from the moment the writer sent each write (the time it wrote
//! into the report, see [`crate::stamp`]) to its receipt by every
//! subscriber it concerns. The same writer, subscribers and measurement for
//! truce, the floors and etcd watchers. Every subscriber's receipts are
//! checked against what it should have seen: lost and duplicated changes
//! are counted, not assumed away; the deliveries still missing when the
//! last write was acknowledged (the backlog) are reported, as is the CPU
//! the servers and the client used and the servers' peak memory.

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use tonic::{codegen::http::uri::PathAndQuery, transport::Channel};
use tonic_prost::ProstCodec;
use truce_proto::v1;

use crate::{
    client::{Kind, Pool, Writer},
    cpu, etcd, load, reports,
    stamp::Carried,
    stats::Latencies,
};

/// How long after the last write the bench waits for deliveries before it
/// counts the missing ones as lost.
pub(crate) const DRAIN: Duration = Duration::from_secs(5);

/// What a subscriber reads of a `SubscribeResponse`: the position of each
/// change and the report's summary, which carries its number and send
/// time; prost skips the rest unread.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Delivered {
    #[prost(oneof = "DeliveredKind", tags = "1, 2, 6")]
    kind: Option<DeliveredKind>,
}

impl Delivered {
    /// The position of a change; `None` for other messages.
    pub(crate) fn change(&self) -> Option<u64> {
        match &self.kind {
            Some(DeliveredKind::Change(change)) => Some(change.position),
            _ => None,
        }
    }

    /// The report number and send time a change carries.
    fn carried(&self) -> Option<(u64, u64)> {
        match &self.kind {
            Some(DeliveredKind::Change(change)) => change.report.as_ref()?.report.as_ref()?.read(),
            _ => None,
        }
    }
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum DeliveredKind {
    #[prost(message, tag = "1")]
    Subscribed(Change),
    #[prost(message, tag = "2")]
    Change(Change),
    #[prost(message, tag = "6")]
    LeftFilter(Change),
}

/// `IncidentChange` (and `Subscribed`, whose first field is a position too).
#[derive(Clone, PartialEq, prost::Message)]
struct Change {
    #[prost(uint64, tag = "1")]
    position: u64,
    #[prost(message, optional, tag = "5")]
    report: Option<StoredCarried>,
}

/// `StoredReport`, down to its report.
#[derive(Clone, PartialEq, prost::Message)]
struct StoredCarried {
    #[prost(message, optional, tag = "5")]
    report: Option<Carried>,
}

/// Opens a subscription; returns once the service confirmed it.
pub(crate) async fn subscribe(
    channel: Channel,
    request: v1::SubscribeRequest,
) -> anyhow::Result<tonic::Streaming<Delivered>> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await?;
    let mut stream = grpc
        .server_streaming(
            tonic::Request::new(request),
            PathAndQuery::from_static("/truce.v1.QueryService/Subscribe"),
            ProstCodec::<v1::SubscribeRequest, Delivered>::default(),
        )
        .await?
        .into_inner();
    match stream.message().await? {
        Some(Delivered {
            kind: Some(DeliveredKind::Subscribed(_)),
        }) => Ok(stream),
        other => anyhow::bail!("the subscription did not start: {other:?}"),
    }
}

/// Which system is measured.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// truce: writes to the ingest service, subscriptions on the query
    /// service.
    Truce { ingest: String, query: String },
    /// A floor (bare or durable): one server for both.
    Floor(String),
    /// etcd: Puts, and watchers on the reports' key prefix.
    Etcd(String),
}

impl Target {
    fn subscriptions_endpoint(&self) -> &str {
        match self {
            Target::Truce { query, .. } => query,
            Target::Floor(endpoint) | Target::Etcd(endpoint) => endpoint,
        }
    }

    fn writes_endpoint(&self) -> &str {
        match self {
            Target::Truce { ingest, .. } => ingest,
            Target::Floor(endpoint) | Target::Etcd(endpoint) => endpoint,
        }
    }

    /// The kind of request its writer sends.
    pub(crate) fn kind(&self) -> Kind {
        match self {
            Target::Truce { .. } | Target::Floor(_) => Kind::Submit,
            Target::Etcd(_) => Kind::Put,
        }
    }
}

/// What each subscriber asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Selection {
    /// Every change, unfiltered.
    Everything,
    /// The suite's mix: a quarter everything, the rest a category, an area
    /// or a reporting party ([`reports::subscriber_filter`]).
    Mixed,
}

/// One delivery workload.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Load {
    pub(crate) subscriptions: usize,
    /// Writes per second.
    pub(crate) rate: f64,
    /// How long the writer writes.
    pub(crate) seconds: f64,
    pub(crate) selection: Selection,
}

impl Load {
    /// How many writes it makes.
    pub(crate) fn writes(&self) -> u64 {
        (self.rate * self.seconds) as u64
    }
}

/// A selection of changes a subscriber should see, by report number.
type Selects = Box<dyn Fn(u64) -> bool + Send + Sync>;

/// One run's outcome.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    /// From the writer's send to the subscriber's receipt, every delivery.
    pub(crate) latencies: Latencies,
    /// Writes per second achieved.
    pub(crate) write_rate: f64,
    /// Deliveries expected in all.
    pub(crate) expected: u64,
    /// Expected deliveries not yet received when the last write was
    /// acknowledged.
    pub(crate) backlog: u64,
    /// Expected deliveries still not received [`DRAIN`] after that.
    pub(crate) lost: u64,
    /// Deliveries of a change already delivered to that subscriber, or of
    /// one it should not have seen.
    pub(crate) unexpected: u64,
    /// CPU used from the first write to the end of the drain.
    pub(crate) busy: cpu::Busy,
    /// The servers' largest resident memory over the run, in bytes.
    pub(crate) peak_resident: u64,
}

impl Delivery {
    /// The backlog as seconds of deliveries at the asked rate.
    pub(crate) fn backlog_seconds(&self, load: &Load) -> f64 {
        let per_second = self.expected as f64 / load.seconds.max(1e-9);
        self.backlog as f64 / per_second.max(1e-9)
    }
}

/// (report number, microseconds from send to receipt) of each receipt.
type Received = Vec<(u64, u64)>;

/// Opens the subscriptions of `load` on `target`, writes from `pool` at
/// its rate, and collects deliveries. `servers` are the processes whose
/// CPU and memory count as the system's.
pub(crate) async fn run(target: &Target, load: Load, pool: &Pool, servers: &[u32]) -> anyhow::Result<Delivery> {
    anyhow::ensure!(
        !(matches!(target, Target::Etcd(_)) && load.selection == Selection::Mixed),
        "etcd selects by key prefix only: it is measured with every watcher unfiltered"
    );
    let epoch = Instant::now();
    let writes = load.writes();
    let received_total = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut selections: Vec<Selects> = Vec::with_capacity(load.subscriptions);
    let mut subscribers = tokio::task::JoinSet::new();
    let per_connection = 100;
    let mut channel = None;
    for i in 0..load.subscriptions {
        if i % per_connection == 0 {
            channel = Some(load::channels(target.subscriptions_endpoint(), 1).await?.remove(0));
        }
        let channel = channel.clone().context("no connection")?;
        let (stream, selects) = open(target, channel, i, load.selection).await?;
        selections.push(selects);
        let (total, mut stop) = (Arc::clone(&received_total), stop_rx.clone());
        subscribers.spawn(async move {
            let mut received: Received = Vec::new();
            let mut stream = stream;
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    next = stream.next(epoch) => match next {
                        Some(batch) => {
                            total.fetch_add(batch.len() as u64, Ordering::Relaxed);
                            received.extend(batch);
                        }
                        None => break,
                    },
                }
            }
            (i, received)
        });
    }

    let writer = Writer::grpc(target.kind(), target.writes_endpoint()).await?;
    let meter = cpu::Meter::start(servers);
    let memory = cpu::PeakResident::watch(servers);
    let took = {
        let pool = pool.clone();
        load::open_loop(load.rate, writes, move |n| {
            let (writer, request) = (writer.clone(), pool.get(n).cloned());
            async move {
                let request = request?;
                let body = request.body.sent_at(epoch.elapsed().as_micros() as u64);
                writer.send(n, &request, body).await
            }
        })
        .await?
    };
    let received_when_written = received_total.load(Ordering::Relaxed);
    let expected: u64 = selections
        .iter()
        .map(|selects| (0..writes).filter(|&n| selects(n)).count() as u64)
        .sum();

    let drained_by = Instant::now() + DRAIN;
    while received_total.load(Ordering::Relaxed) < expected && Instant::now() < drained_by {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let busy = meter.stop();
    let peak_resident = memory.stop();
    let _ = stop_tx.send(true);

    let mut samples = Vec::with_capacity(expected as usize);
    let (mut delivered, mut unexpected) = (0u64, 0u64);
    while let Some(joined) = subscribers.join_next().await {
        let (i, received) = joined?;
        let selects = &selections[i];
        let mut seen = HashSet::with_capacity(received.len());
        for (n, latency) in received {
            if n < writes && selects(n) && seen.insert(n) {
                delivered += 1;
                samples.push(latency);
            } else {
                unexpected += 1;
            }
        }
    }
    Ok(Delivery {
        latencies: Latencies::new(samples),
        write_rate: writes as f64 / took.as_secs_f64(),
        expected,
        backlog: expected.saturating_sub(received_when_written),
        lost: expected.saturating_sub(delivered),
        unexpected,
        busy,
        peak_resident,
    })
}

/// A subscription's stream of deliveries.
enum Stream {
    Changes(tonic::Streaming<Delivered>),
    Watch(tonic::Streaming<etcd::WatchResponse>),
}

impl Stream {
    /// The next reports delivered, with the time from their send to now;
    /// `None` at the end. A change that carries no send time is reported
    /// with number `u64::MAX`, so that it counts as unexpected.
    async fn next(&mut self, epoch: Instant) -> Option<Received> {
        let since_sent = |carried: Option<(u64, u64)>, now: u64| {
            carried.map_or((u64::MAX, 0), |(n, sent)| (n, now.saturating_sub(sent)))
        };
        loop {
            match self {
                Stream::Changes(stream) => {
                    let message = stream.message().await.ok()??;
                    let now = epoch.elapsed().as_micros() as u64;
                    if message.change().is_some() {
                        return Some(vec![since_sent(message.carried(), now)]);
                    }
                }
                Stream::Watch(stream) => {
                    let message = stream.message().await.ok()??;
                    let now = epoch.elapsed().as_micros() as u64;
                    let batch: Received = message
                        .events
                        .iter()
                        .filter_map(|e| e.kv.as_ref())
                        .map(|kv| since_sent(kv.value.as_ref().and_then(Carried::read), now))
                        .collect();
                    if !batch.is_empty() {
                        return Some(batch);
                    }
                }
            }
        }
    }
}

/// Opens subscription `i` and says which writes it should see.
async fn open(target: &Target, channel: Channel, i: usize, selection: Selection) -> anyhow::Result<(Stream, Selects)> {
    match target {
        Target::Truce { .. } | Target::Floor(_) => {
            let (filter, selects) = match selection {
                Selection::Everything => (String::new(), Box::new(|_| true) as Selects),
                Selection::Mixed => reports::subscriber_filter(i),
            };
            let request = v1::SubscribeRequest {
                filter,
                start: Some(v1::subscribe_request::Start::FromNow(true)),
                heartbeat_interval: Some(prost_types::Duration {
                    seconds: 3600,
                    nanos: 0,
                }),
                snapshot: false,
            };
            let stream = subscribe(channel, request)
                .await
                .with_context(|| format!("subscription {i}"))?;
            Ok((Stream::Changes(stream), selects))
        }
        Target::Etcd(_) => {
            let stream = etcd::Client::new(channel).watch_prefix(b"/reports/").await?;
            Ok((Stream::Watch(stream), Box::new(|_| true)))
        }
    }
}

/// `deliver`: delivery on a running `truce up`, for profiling it.
#[derive(Debug, clap::Args)]
pub(crate) struct DeliverArgs {
    /// The ingest service of a `truce up` over an empty log, e.g.
    /// `http://127.0.0.1:50051`.
    #[arg(long)]
    ingest: String,
    /// Its query service, e.g. `http://127.0.0.1:50052`.
    #[arg(long)]
    query: String,
    /// Subscriptions.
    #[arg(long, default_value_t = 100)]
    subscriptions: usize,
    /// Give subscribers the suite's mixed filters instead of none.
    #[arg(long)]
    mixed: bool,
    /// Writes per second.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// How long to write, in seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
}

/// Runs one delivery workload against a running `truce up` and prints
/// what it measured.
pub(crate) async fn deliver_command(args: DeliverArgs) -> anyhow::Result<()> {
    let target = Target::Truce {
        ingest: args.ingest,
        query: args.query,
    };
    let load = Load {
        subscriptions: args.subscriptions,
        rate: args.rate,
        seconds: args.seconds,
        selection: if args.mixed {
            Selection::Mixed
        } else {
            Selection::Everything
        },
    };
    let pool = Pool::encode(
        target.kind(),
        &format!("deliver-{}", std::process::id()),
        0..load.writes(),
    )?;
    let d = run(&target, load, &pool, &[]).await?;
    println!(
        "{} subscriptions, {:.0} writes/s achieved: p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms; {} deliveries, backlog {} when the writes ended, {} undelivered {:?} later, {} unexpected; client {:.2} cores",
        args.subscriptions,
        d.write_rate,
        d.latencies.quantile_ms(0.5),
        d.latencies.quantile_ms(0.99),
        d.latencies.max_ms(),
        d.expected,
        d.backlog,
        d.lost,
        DRAIN,
        d.unexpected,
        d.busy.client,
    );
    Ok(())
}
