//! Cold start over a kept log: fills a data directory once through the
//! bulk stream, then starts `truce up` over it again and again, timing each
//! start from the process starting to a listing at the head answering.
//! The directory is kept between runs, so builds can be measured in turn
//! over the same log (`TRUCE_BENCH_TRUCE` names the build).

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context;
use truce_proto::v1::{self, query_service_client::QueryServiceClient};

use crate::{ingest, procs::Truce};

/// Settings of `cold-start`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The data directory holding the log; filled first when it holds none.
    #[arg(long)]
    data: PathBuf,
    /// Reports in the log, each its own incident and one event.
    #[arg(long, default_value_t = 1_000_000)]
    reports: u64,
    /// Starts to time.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// Fills the log if needed, then times `runs` starts and prints each and
/// their median.
pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    if !args.data.join("log.sqlite3").exists() {
        fill(&args.data, args.reports).await?;
    }
    let mut took = Vec::with_capacity(args.runs);
    for _ in 0..args.runs {
        let (start, resident) = start_once(&args.data, args.reports).await?;
        println!(
            "cold start {:.2} s, {:.0} MiB resident",
            start.as_secs_f64(),
            resident as f64 / (1024.0 * 1024.0)
        );
        took.push(start);
    }
    took.sort();
    if let Some(median) = took.get(took.len() / 2) {
        println!("median {:.2} s over {} starts", median.as_secs_f64(), took.len());
    }
    Ok(())
}

/// Puts `reports` reports into a new log in `data`.
async fn fill(data: &Path, reports: u64) -> anyhow::Result<()> {
    let truce = Truce::up(data, &[]).await?;
    let took = ingest::bulk(&truce.endpoint("ingest"), 4, 0..reports, "cold-start").await?;
    println!("filled {reports} reports in {:.1} s", took.as_secs_f64());
    truce.kill().await;
    Ok(())
}

/// One start over the log at `head`: the time to a listing at the head,
/// and the resident memory then.
pub(crate) async fn start_once(data: &Path, head: u64) -> anyhow::Result<(Duration, u64)> {
    let started = Instant::now();
    let truce = Truce::up(data, &[]).await?;
    let mut client = QueryServiceClient::connect(truce.endpoint("query")).await?;
    let mut request = tonic::Request::new(v1::ListIncidentsRequest {
        page_size: 1,
        min_position: head,
        ..Default::default()
    });
    request.set_timeout(Duration::from_secs(300));
    let answer = client.list_incidents(request).await.context("listing at the head")?;
    let took = started.elapsed();
    anyhow::ensure!(
        answer.get_ref().position == head,
        "the log's head is {}, not {head}",
        answer.get_ref().position
    );
    let resident = truce.proc().resident_bytes()?;
    truce.kill().await;
    Ok((took, resident))
}
