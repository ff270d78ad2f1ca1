//! Memory per idle subscription: open N subscriptions (100 per connection),
//! wait until each is confirmed, and compare the server's resident memory
//! with what it had before. The same for etcd watchers, one watch stream
//! each.

use std::time::Duration;

use anyhow::Context;
use tonic::transport::Channel;
use truce_proto::v1;

use crate::{
    delivery, etcd, load,
    procs::{Proc, Scratch, Truce},
    stats::group,
};

/// Settings of `idle-subscriptions`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Subscription counts to measure, each on a fresh server.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    counts: Vec<usize>,
}

/// Subscriptions per connection.
const PER_CONNECTION: usize = 100;

/// Resident memory of a server before and after opening idle streams.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Footprint {
    pub(crate) before: u64,
    pub(crate) after: u64,
    pub(crate) count: usize,
}

impl Footprint {
    /// Bytes per stream.
    pub(crate) fn per_stream(&self) -> f64 {
        self.after.saturating_sub(self.before) as f64 / self.count as f64
    }
}

/// Opens `count` streams on `endpoint` with `open` and reads `proc`'s
/// resident memory before and after.
async fn around<F, Fut, S>(proc: &Proc, endpoint: &str, count: usize, open: F) -> anyhow::Result<Footprint>
where
    F: Fn(Channel) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<S>>,
{
    // Let start-up allocations settle before the baseline.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = proc.resident_bytes()?;
    let mut streams = Vec::with_capacity(count);
    let mut channel = None;
    for i in 0..count {
        if i % PER_CONNECTION == 0 {
            channel = Some(load::channels(endpoint, 1).await?.remove(0));
        }
        let channel = channel.clone().context("no connection")?;
        streams.push(open(channel).await?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = proc.resident_bytes()?;
    drop(streams);
    Ok(Footprint { before, after, count })
}

/// `count` idle subscriptions on a fresh `truce up`.
pub(crate) async fn truce(count: usize) -> anyhow::Result<Footprint> {
    let data = Scratch::new("idle")?;
    let cap = count.to_string();
    let server = Truce::up(
        data.path(),
        &["--max-subscriptions", &cap, "--max-subscriptions-per-address", &cap],
    )
    .await?;
    around(server.proc(), &server.endpoint("query"), count, |channel| {
        delivery::subscribe(
            channel,
            v1::SubscribeRequest {
                heartbeat_interval: Some(prost_types::Duration {
                    seconds: 3600,
                    nanos: 0,
                }),
                ..Default::default()
            },
        )
    })
    .await
}

/// `count` idle watchers, one watch stream each, on a fresh etcd.
pub(crate) async fn etcd(binary: &std::path::Path, count: usize) -> anyhow::Result<Footprint> {
    let server = etcd::Etcd::start(binary).await?;
    let endpoint = format!("http://{}", server.addr);
    around(&server.proc, &endpoint, count, |channel| async move {
        Ok(etcd::Client::new(channel).watch_prefix(b"/reports/").await?)
    })
    .await
}

/// Prints the table.
pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    println!("| idle subscriptions | server RSS before | server RSS after | per subscription |");
    println!("|---:|---:|---:|---:|");
    for count in args.counts {
        let f = truce(count).await?;
        println!(
            "| {} | {:.1} MiB | {:.1} MiB | {:.1} KiB |",
            group(count as f64, 0),
            f.before as f64 / 1048576.0,
            f.after as f64 / 1048576.0,
            f.per_stream() / 1024.0
        );
    }
    Ok(())
}
