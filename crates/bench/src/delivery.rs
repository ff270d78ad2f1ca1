//! End-to-end delivery: many subscriptions with mixed filters, one writer at
//! a fixed rate, and the time from each write's acknowledgement to its
//! receipt by every subscriber it concerns. The same for the floor's bare
//! broadcast and for etcd watchers. Every subscriber's received positions
//! are checked against what it should have seen: lost and duplicated
//! changes are counted, not assumed away.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use tonic::{codegen::http::uri::PathAndQuery, transport::Channel};
use tonic_prost::ProstCodec;
use truce_proto::v1;

use crate::{etcd, load, reports, stats::Latencies};

/// What a subscriber reads of a `SubscribeResponse`: the position of each
/// change and nothing else; prost skips the rest unread, so the client's
/// own decoding does not weigh on the measurement.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Delivered {
    #[prost(oneof = "DeliveredKind", tags = "1, 2, 6")]
    kind: Option<DeliveredKind>,
}

impl Delivered {
    /// The position of a change; `None` for other messages.
    pub(crate) fn change(&self) -> Option<u64> {
        match &self.kind {
            Some(DeliveredKind::Change(at)) => Some(at.position),
            _ => None,
        }
    }
}

/// Opens a subscription that reads only positions; returns once the
/// service confirmed it.
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

#[derive(Clone, PartialEq, prost::Oneof)]
enum DeliveredKind {
    #[prost(message, tag = "1")]
    Subscribed(At),
    #[prost(message, tag = "2")]
    Change(At),
    #[prost(message, tag = "6")]
    LeftFilter(At),
}

/// The first field of `Subscribed` and `IncidentChange`.
#[derive(Clone, PartialEq, prost::Message)]
struct At {
    #[prost(uint64, tag = "1")]
    position: u64,
}

/// Which system is measured.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// truce: writes to the ingest service, subscriptions on the query
    /// service, with filters.
    Truce { ingest: String, query: String },
    /// The floor: one server, every change to every stream.
    Floor(String),
    /// etcd: Puts, and watchers on key prefixes.
    Etcd(String),
}

/// A selection of changes a subscriber should see, by report number.
type Selects = Box<dyn Fn(u64) -> bool + Send + Sync>;

/// One run's outcome.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    /// Acknowledgement to receipt, every delivery.
    pub(crate) latencies: Latencies,
    /// Writes per second achieved.
    pub(crate) write_rate: f64,
    /// Deliveries expected in all.
    pub(crate) expected: u64,
    /// Expected deliveries that never came.
    pub(crate) lost: u64,
    /// Deliveries of a change already delivered to that subscriber, or of
    /// one it should not have seen.
    pub(crate) unexpected: u64,
}

type Received = Vec<(u64, u64)>;

/// Opens `count` subscriptions on `target`, writes `writes` reports at
/// `rate` per second (numbered from `first`), and collects deliveries.
pub(crate) async fn run(target: &Target, count: usize, rate: f64, writes: u64, first: u64) -> anyhow::Result<Delivery> {
    let epoch = Instant::now();
    let received_total = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut selections: Vec<Selects> = Vec::with_capacity(count);
    let mut subscribers = tokio::task::JoinSet::new();
    let per_connection = 100;
    let mut channel = None;
    for i in 0..count {
        if i % per_connection == 0 {
            let endpoint = match target {
                Target::Truce { query, .. } => query,
                Target::Floor(addr) | Target::Etcd(addr) => addr,
            };
            channel = Some(load::channels(endpoint, 1).await?.remove(0));
        }
        let channel = channel.clone().context("no connection")?;
        let (stream, selects) = open(target, channel, i).await?;
        selections.push(selects);
        let (total, mut stop) = (Arc::clone(&received_total), stop_rx.clone());
        subscribers.spawn(async move {
            let mut received: Received = Vec::new();
            let mut stream = stream;
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    next = stream.next(epoch) => match next {
                        Some(positions) => {
                            total.fetch_add(positions.len() as u64, Ordering::Relaxed);
                            received.extend(positions);
                        }
                        None => break,
                    },
                }
            }
            (i, received)
        });
    }

    // Write at the rate; remember when each write was acknowledged.
    let acks: Arc<Mutex<Vec<(u64, u64, u64)>>> = Arc::new(Mutex::new(Vec::with_capacity(writes as usize)));
    let writer = Writer::connect(target).await?;
    let took = {
        let acks = Arc::clone(&acks);
        load::open_loop(rate, writes, move |k| {
            let (mut writer, acks) = (writer.clone(), Arc::clone(&acks));
            async move {
                let n = first + k;
                let position = writer.write(n).await?;
                let at = epoch.elapsed().as_micros() as u64;
                acks.lock().unwrap_or_else(|p| p.into_inner()).push((position, n, at));
                Ok(())
            }
        })
        .await?
    };
    let acks = std::mem::take(&mut *acks.lock().unwrap_or_else(|p| p.into_inner()));
    let by_position: HashMap<u64, (u64, u64)> = acks.iter().map(|&(p, n, at)| (p, (n, at))).collect();
    let expected: u64 = selections
        .iter()
        .map(|selects| acks.iter().filter(|&&(_, n, _)| selects(n)).count() as u64)
        .sum();

    // Wait for every expected delivery, or give up after a grace period.
    let grace = Instant::now() + Duration::from_secs(10);
    while received_total.load(Ordering::Relaxed) < expected && Instant::now() < grace {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop_tx.send(true);

    let mut samples = Vec::new();
    let (mut delivered, mut unexpected) = (0u64, 0u64);
    while let Some(joined) = subscribers.join_next().await {
        let (i, received) = joined?;
        let selects = &selections[i];
        let mut seen = std::collections::HashSet::with_capacity(received.len());
        for (position, at) in received {
            match by_position.get(&position) {
                Some(&(n, acked)) if selects(n) && seen.insert(position) => {
                    delivered += 1;
                    samples.push(at.saturating_sub(acked));
                }
                // A change written before the measured writes (the
                // subscription started at "now") is not counted.
                None if position < by_position.keys().copied().min().unwrap_or(0) => {}
                _ => unexpected += 1,
            }
        }
    }
    Ok(Delivery {
        latencies: Latencies::new(samples),
        write_rate: writes as f64 / took.as_secs_f64(),
        expected,
        lost: expected.saturating_sub(delivered),
        unexpected,
    })
}

/// A subscription's stream of delivered positions.
enum Stream {
    Changes(tonic::Streaming<Delivered>),
    Watch(tonic::Streaming<etcd::WatchResponse>),
}

impl Stream {
    /// The next positions delivered, with when they arrived (µs since
    /// `epoch`); `None` at the end.
    async fn next(&mut self, epoch: Instant) -> Option<Vec<(u64, u64)>> {
        loop {
            match self {
                Stream::Changes(stream) => {
                    let message = stream.message().await.ok()??;
                    let at = epoch.elapsed().as_micros() as u64;
                    if let Some(position) = message.change() {
                        return Some(vec![(position, at)]);
                    }
                }
                Stream::Watch(stream) => {
                    let message = stream.message().await.ok()??;
                    let at = epoch.elapsed().as_micros() as u64;
                    let positions: Vec<(u64, u64)> = message
                        .events
                        .iter()
                        .filter_map(|e| e.kv.as_ref())
                        .map(|kv| (kv.mod_revision as u64, at))
                        .collect();
                    if !positions.is_empty() {
                        return Some(positions);
                    }
                }
            }
        }
    }
}

/// Opens subscription `i` and says which writes it should see.
async fn open(target: &Target, channel: Channel, i: usize) -> anyhow::Result<(Stream, Selects)> {
    match target {
        Target::Truce { .. } | Target::Floor(_) => {
            let (filter, selects) = reports::subscriber_filter(i);
            let floor = matches!(target, Target::Floor(_));
            let request = v1::SubscribeRequest {
                // The floor ignores filters: it sends everything.
                filter: if floor { String::new() } else { filter },
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
            let selects: Selects = if floor { Box::new(|_| true) } else { selects };
            Ok((Stream::Changes(stream), selects))
        }
        Target::Etcd(_) => {
            let (prefix, selects) = etcd_watch(i);
            let stream = etcd::Client::new(channel).watch_prefix(&prefix).await?;
            Ok((Stream::Watch(stream), selects))
        }
    }
}

/// An etcd watcher's key prefix: everything for a quarter of them, one
/// category for the rest (etcd selects by key prefix only).
fn etcd_watch(i: usize) -> (Vec<u8>, Selects) {
    if i.is_multiple_of(4) {
        (b"/reports/".to_vec(), Box::new(|_| true))
    } else {
        let wanted = reports::category(i as u64);
        (
            format!("/reports/{}/", wanted as i32).into_bytes(),
            Box::new(move |n| reports::category(n) == wanted),
        )
    }
}

/// The writer of a target, cheap to clone.
#[derive(Clone)]
enum Writer {
    Submit(Vec<v1::ingest_service_client::IngestServiceClient<Channel>>),
    Put(Vec<etcd::Client>),
}

impl Writer {
    async fn connect(target: &Target) -> anyhow::Result<Writer> {
        Ok(match target {
            Target::Truce { ingest: endpoint, .. } | Target::Floor(endpoint) => Writer::Submit(
                load::channels(endpoint, 4)
                    .await?
                    .into_iter()
                    .map(v1::ingest_service_client::IngestServiceClient::new)
                    .collect(),
            ),
            Target::Etcd(endpoint) => Writer::Put(
                load::channels(endpoint, 4)
                    .await?
                    .into_iter()
                    .map(etcd::Client::new)
                    .collect(),
            ),
        })
    }

    /// Writes report `n`; its position (truce, floor) or revision (etcd).
    async fn write(&mut self, n: u64) -> anyhow::Result<u64> {
        Ok(match self {
            Writer::Submit(clients) => {
                let client = &mut clients[(n % 4) as usize];
                client
                    .submit_report(reports::request("d", n))
                    .await?
                    .into_inner()
                    .position
            }
            Writer::Put(clients) => {
                let client = &mut clients[(n % 4) as usize];
                client.put(reports::etcd_key(n), reports::payload(n)).await? as u64
            }
        })
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
    /// Subscriptions, with the suite's mixed filters.
    #[arg(long, default_value_t = 100)]
    subscriptions: usize,
    /// Writes per second.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// How long to write, in seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
}

/// Runs the suite's delivery workload once against a running `truce up`
/// and prints its latencies.
pub(crate) async fn deliver_command(args: DeliverArgs) -> anyhow::Result<()> {
    let target = Target::Truce {
        ingest: args.ingest,
        query: args.query,
    };
    let writes = (args.rate * args.seconds) as u64;
    let delivery = run(&target, args.subscriptions, args.rate, writes, 0).await?;
    println!(
        "{} subscriptions, {:.0} writes/s achieved: p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms; {} deliveries, {} undelivered, {} unexpected",
        args.subscriptions,
        delivery.write_rate,
        delivery.latencies.quantile_ms(0.5),
        delivery.latencies.quantile_ms(0.99),
        delivery.latencies.max_ms(),
        delivery.expected,
        delivery.lost,
        delivery.unexpected
    );
    Ok(())
}
