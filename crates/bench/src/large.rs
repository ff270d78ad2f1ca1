//! Workloads over a large log: filled through the bulk stream, then a new
//! subscriber replays it from the start, `ListIncidents` runs selective
//! filters over it, and the server is killed and started again over it.

use std::time::{Duration, Instant};

use anyhow::Context;
use truce_proto::v1::{self, query_service_client::QueryServiceClient};

use crate::{
    delivery, ingest, load,
    procs::{Scratch, Truce},
    reports,
    stats::Latencies,
};

/// What one run over a large log measured.
#[derive(Debug, Clone)]
pub(crate) struct Large {
    /// Reports in the log.
    pub(crate) reports: u64,
    /// Reports per second through the bulk stream while filling.
    pub(crate) fill_rate: f64,
    /// Changes per second replayed by one new subscriber from the start.
    pub(crate) catch_up_rate: f64,
    /// `ListIncidents` with selective filters.
    pub(crate) query: Latencies,
    /// Bytes on disk per stored report.
    pub(crate) disk_per_report: f64,
    /// Mean encoded size of the reports.
    pub(crate) encoded_per_report: f64,
    /// Resident memory of `truce up` holding the log's view.
    pub(crate) resident_bytes: u64,
    /// From starting `truce up` over the log to its query view answering
    /// at the head.
    pub(crate) cold_start: Duration,
}

/// Selective filters of the kind a dashboard runs: a place and a kind of
/// event, a party and a kind with a casualty threshold.
const QUERIES: [&str; 4] = [
    "area = \"Rafah\" AND category = AIR_STRIKE",
    "reporter = \"hamas\" AND category = TUNNEL_ACTIVITY AND killed_high >= 2",
    "area = \"Beit Hanoun\" AND category = SHELLING AND status = REPORTED",
    "responsible = \"idf\" AND area = \"Khan Younis\" AND category = DETENTION",
];

/// Fills a fresh `truce up` with `count` reports and measures over it.
pub(crate) async fn run(count: u64, queries: usize) -> anyhow::Result<Large> {
    let data = Scratch::new("large")?;
    let truce = Truce::up(data.path(), &[]).await?;
    let took = ingest::bulk(&truce.endpoint("ingest"), 4, 0..count, "large").await?;
    let fill_rate = count as f64 / took.as_secs_f64();

    // One subscriber from the start of the log to its head.
    let channel = load::channels(&truce.endpoint("query"), 1).await?.remove(0);
    let catch_up_rate = replay(channel.clone(), count).await?;

    let query = list_latencies(QueryServiceClient::new(channel), queries).await?;
    let resident_bytes = truce.proc().resident_bytes()?;
    truce.kill().await;
    let disk = data.disk_bytes();

    // Cold start: the process starts, opens the log and folds it into the
    // view; done when a listing at the head answers.
    let (cold_start, _) = crate::coldstart::start_once(data.path(), count).await?;

    let sample = count.min(10_000);
    let encoded: usize = (0..sample).map(|n| reports::payload(n).len()).sum();
    Ok(Large {
        reports: count,
        fill_rate,
        catch_up_rate,
        query,
        disk_per_report: disk as f64 / count as f64,
        encoded_per_report: encoded as f64 / sample as f64,
        resident_bytes,
        cold_start,
    })
}

/// Subscribes from the start of the log and reads `count` changes, each
/// exactly once and in order; returns changes per second.
async fn replay(channel: tonic::transport::Channel, count: u64) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut stream = delivery::subscribe(
        channel,
        v1::SubscribeRequest {
            start: Some(v1::subscribe_request::Start::FromBeginning(true)),
            ..Default::default()
        },
    )
    .await?;
    let mut replayed = 0u64;
    while replayed < count {
        let message = stream.message().await?.context("the replay ended early")?;
        if let Some(position) = message.change() {
            replayed += 1;
            anyhow::ensure!(position == replayed, "position {position} arrived as change {replayed}");
        }
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// Settings of `replay`.
#[derive(Debug, clap::Args)]
pub(crate) struct ReplayArgs {
    /// The query service, e.g. `http://127.0.0.1:50052`.
    #[arg(long)]
    endpoint: String,
    /// Changes to read from the start of the log.
    #[arg(long)]
    count: u64,
}

/// Replays a running query service's log from the start and prints the
/// rate, for profiling catch-up.
pub(crate) async fn replay_command(args: ReplayArgs) -> anyhow::Result<()> {
    let channel = load::channels(&args.endpoint, 1).await?.remove(0);
    let rate = replay(channel, args.count).await?;
    println!("{rate:.0} changes/s replayed from the start");
    Ok(())
}

/// `queries` listings cycling through the selective filters, one at a time.
async fn list_latencies(
    mut client: QueryServiceClient<tonic::transport::Channel>,
    queries: usize,
) -> anyhow::Result<Latencies> {
    let mut samples = Vec::with_capacity(queries);
    for i in 0..queries {
        let request = v1::ListIncidentsRequest {
            filter: QUERIES[i % QUERIES.len()].to_owned(),
            page_size: 50,
            ..Default::default()
        };
        let started = Instant::now();
        let page = client.list_incidents(request).await?.into_inner();
        samples.push(started.elapsed().as_micros() as u64);
        anyhow::ensure!(
            !page.incidents.is_empty(),
            "filter {} matched nothing",
            QUERIES[i % QUERIES.len()]
        );
    }
    Ok(Latencies::new(samples))
}
