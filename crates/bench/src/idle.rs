//! Memory per idle subscription: open N subscriptions, wait until each is
//! confirmed, and compare the server's resident memory with N = 0.

use std::time::Duration;

use anyhow::Context;
use tokio_stream::StreamExt;
use truce_proto::v1::{self, query_service_client::QueryServiceClient};

use crate::server::Server;

/// Settings of `idle-subscriptions`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Subscription counts to measure, each on a fresh server.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    counts: Vec<usize>,
    /// Subscriptions per connection.
    #[arg(long, default_value_t = 100)]
    per_connection: usize,
}

async fn measure(count: usize, per_connection: usize) -> anyhow::Result<(u64, u64)> {
    let cap = count.to_string();
    let server = Server::start(&["--max-subscriptions", &cap, "--max-subscriptions-per-caller", &cap]).await?;
    let endpoint = format!("http://{}", server.addresses["query"]);
    // Let start-up allocations settle before the baseline.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = server.resident_bytes()?;
    let mut streams = Vec::with_capacity(count);
    let mut client = None;
    for i in 0..count {
        if i % per_connection == 0 {
            client = Some(QueryServiceClient::connect(endpoint.clone()).await?);
        }
        let request = v1::SubscribeRequest {
            heartbeat_interval: Some(prost_types::Duration {
                seconds: 3600,
                nanos: 0,
            }),
            ..Default::default()
        };
        let mut stream = client
            .as_mut()
            .context("client")?
            .subscribe(request)
            .await?
            .into_inner();
        stream.next().await.context("no confirmation")??;
        streams.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let loaded = server.resident_bytes()?;
    drop(streams);
    Ok((baseline, loaded))
}

/// Prints the table.
pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    println!("| idle subscriptions | server RSS before | server RSS after | per subscription |");
    println!("|---:|---:|---:|---:|");
    for count in args.counts {
        let (before, after) = measure(count, args.per_connection).await?;
        let per = after.saturating_sub(before) as f64 / count as f64;
        println!(
            "| {count} | {:.1} MiB | {:.1} MiB | {:.1} KiB |",
            before as f64 / 1048576.0,
            after as f64 / 1048576.0,
            per / 1024.0
        );
    }
    Ok(())
}
