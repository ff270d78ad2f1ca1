//! Durable ingest: acknowledged writes per second at a fixed number of
//! requests in flight, for truce's `SubmitReport`, the floors'
//! `SubmitReport` (no-op, and group commit with fdatasync), etcd's `Put`
//! and JetStream's acknowledged publish, all sent by one client from
//! requests encoded ahead; and truce's bulk stream.

use std::time::{Duration, Instant};

use tokio_stream::StreamExt;
use truce_proto::v1::{self, ingest_service_client::IngestServiceClient};

use crate::{
    client::{Kind, Pool, Writer},
    load, reports,
};

/// How long each point warms up and is measured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub(crate) warm_up: Duration,
    pub(crate) measure: Duration,
}

/// Settings of `submit`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The ingest service, e.g. `http://127.0.0.1:50051`.
    #[arg(long)]
    endpoint: String,
    /// Requests in flight.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds of load after one second of warm-up.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

/// Submits reports to a running ingest service and prints the rate.
pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let window = Window {
        warm_up: Duration::from_secs(1),
        measure: Duration::from_secs(args.seconds),
    };
    // Keys of its own, so that a second run on the same log is not
    // answered as replays.
    let run = format!("load-{}", std::process::id());
    let pool = Pool::encode(Kind::Submit, &run, 0..POOL_CALLS_PER_SECOND * (args.seconds + 1))?;
    let writer = Writer::grpc(Kind::Submit, &args.endpoint).await?;
    let rate = closed(writer, &pool, args.concurrency, window).await?;
    println!("{rate:.0} acknowledged reports/s at {} in flight", args.concurrency);
    Ok(())
}

/// Calls per second a pool is encoded for: above what any system measured
/// here reaches with unique requests.
pub(crate) const POOL_CALLS_PER_SECOND: u64 = 100_000;

/// Acknowledged writes per second through `writer` at `concurrency` in
/// flight, sending the requests of `pool` in order, encoded as they are.
pub(crate) async fn closed(writer: Writer, pool: &Pool, concurrency: usize, window: Window) -> anyhow::Result<f64> {
    let pool = pool.clone();
    load::closed_loop(concurrency, window.warm_up, window.measure, move |k| {
        let (writer, request) = (writer.clone(), pool.get(k).cloned());
        async move {
            let request = request?;
            let body = request.body.unstamped();
            writer.send(k, &request, body).await
        }
    })
    .await
}

/// A JetStream context for the plain client (one connection, as the client
/// library is meant to be used).
pub(crate) fn publisher(js: &async_nats::jetstream::Context) -> Writer {
    Writer::Publish(std::sync::Arc::new(js.clone()))
}

/// Submits reports `range` through `streams` concurrent bulk streams, each
/// taking an equal share; every report must be accepted. Returns the time
/// from the first send to the last answer.
pub(crate) async fn bulk(
    endpoint: &str,
    streams: usize,
    range: std::ops::Range<u64>,
    run: &str,
) -> anyhow::Result<Duration> {
    let channels = load::channels(endpoint, streams).await?;
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (s, channel) in channels.into_iter().enumerate() {
        let run = run.to_owned();
        let range = range.clone();
        tasks.spawn(async move {
            let numbers = range.skip(s).step_by(streams);
            let expected = numbers.clone().count();
            let requests = tokio_stream::iter(numbers).map(move |n| v1::SubmitReportsRequest {
                request: Some(reports::request(&run, n)),
            });
            let mut answers = IngestServiceClient::new(channel)
                .max_decoding_message_size(usize::MAX)
                .submit_reports(requests)
                .await?
                .into_inner();
            let mut accepted = 0;
            while let Some(answer) = answers.message().await? {
                match answer.result {
                    Some(v1::submit_reports_response::Result::Accepted(_)) => accepted += 1,
                    other => anyhow::bail!("report {} was not accepted: {other:?}", answer.index),
                }
            }
            anyhow::ensure!(accepted == expected, "{accepted} of {expected} answered");
            anyhow::Ok(())
        });
    }
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    Ok(start.elapsed())
}
