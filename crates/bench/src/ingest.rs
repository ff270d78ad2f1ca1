//! Durable ingest: acknowledged writes per second at a fixed number of
//! requests in flight, for truce's `SubmitReport`, the floor's no-op
//! `SubmitReport`, etcd's `Put` and JetStream's acknowledged publish; and
//! truce's bulk stream.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use truce_proto::v1::{self, ingest_service_client::IngestServiceClient};

use crate::{etcd, load, nats, reports};

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
    let run = format!("load-{}", std::process::id());
    let rate = submit(&args.endpoint, args.concurrency, window, &run, 0).await?;
    println!("{rate:.0} acknowledged reports/s at {} in flight", args.concurrency);
    Ok(())
}

/// Connections a client fleet spreads its calls over.
const CONNECTIONS: usize = 4;

/// `SubmitReport` (truce or the floor) at `concurrency` in flight; report
/// numbers start at `first`, keys are unique to `run`.
pub(crate) async fn submit(
    endpoint: &str,
    concurrency: usize,
    window: Window,
    run: &str,
    first: u64,
) -> anyhow::Result<f64> {
    let clients: Arc<Vec<IngestServiceClient<Channel>>> = Arc::new(
        load::channels(endpoint, CONNECTIONS)
            .await?
            .into_iter()
            .map(IngestServiceClient::new)
            .collect(),
    );
    let run: Arc<str> = run.into();
    load::closed_loop(concurrency, window.warm_up, window.measure, move |k| {
        let mut client = clients[k as usize % CONNECTIONS].clone();
        let request = reports::request(&run, first + k);
        async move {
            client.submit_report(request).await?;
            Ok(())
        }
    })
    .await
}

/// etcd `Put` of the same payloads at `concurrency` in flight.
pub(crate) async fn put(endpoint: &str, concurrency: usize, window: Window, first: u64) -> anyhow::Result<f64> {
    let clients: Arc<Vec<etcd::Client>> = Arc::new(
        load::channels(endpoint, CONNECTIONS)
            .await?
            .into_iter()
            .map(etcd::Client::new)
            .collect(),
    );
    load::closed_loop(concurrency, window.warm_up, window.measure, move |k| {
        let mut client = clients[k as usize % CONNECTIONS].clone();
        let n = first + k;
        async move {
            client.put(reports::etcd_key(n), reports::payload(n)).await?;
            Ok(())
        }
    })
    .await
}

/// JetStream acknowledged publish of the same payloads at `concurrency` in
/// flight (one client connection, as the client library is meant to be
/// used).
pub(crate) async fn publish(
    js: &async_nats::jetstream::Context,
    concurrency: usize,
    window: Window,
    first: u64,
) -> anyhow::Result<f64> {
    let js = js.clone();
    load::closed_loop(concurrency, window.warm_up, window.measure, move |k| {
        let js = js.clone();
        let n = first + k;
        async move {
            let ack = js
                .publish(nats::subject(n), reports::payload(n).into())
                .await
                .context("publishing")?;
            ack.await.context("waiting for the acknowledgement")?;
            Ok(())
        }
    })
    .await
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
