//! `truce-bench`: measurements of truce and of the systems a user would pick
//! instead, on this machine, printed as tables. It starts what it measures
//! itself, on loopback, as separate processes, so the figures are the
//! servers' own.
//!
//! ```text
//! cargo build --release -p truce -p truce-query -p truce-bench
//! target/release/truce-bench suite --quick     # about a minute
//! target/release/truce-bench suite             # the published figures
//! target/release/truce-bench idle-subscriptions --counts 1000,10000
//! TRUCE_BENCH_TRUCE=/path/to/other/truce target/release/truce-bench suite --quick
//! target/release/truce-bench submit --endpoint http://127.0.0.1:50051 --concurrency 64
//! target/release/truce-bench replay --endpoint http://127.0.0.1:50052 --count 100000
//! ```
//!
//! `submit` and `replay` load a `truce up` that is already running, for
//! profiling it (e.g. with `perf record -p`).
//!
//! `TRUCE_BENCH_TRUCE` measures another build of `truce` (an earlier commit,
//! for before-and-after figures) with the same bench.

mod client;
mod coldstart;
mod cpu;
mod delivery;
mod etcd;
mod failover;
mod floor;
mod idle;
mod ingest;
mod large;
mod load;
mod nats;
mod plot;
mod procs;
mod reports;
mod stalled;
mod stamp;
mod stats;
mod suite;

use clap::{Parser, Subcommand};

/// Measures truce and its peers on this machine.
#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Every workload against truce, the raw tonic floor, etcd and
    /// JetStream; writes Markdown and plots to the results folder.
    Suite(suite::Args),
    /// Resident memory of the query side per idle subscription.
    IdleSubscriptions(idle::Args),
    /// Writes through a failover: a 3-node JetStream cluster loses its
    /// stream leader, then a follower, mid-burst; truce beside a plain
    /// JetStream client.
    Failover(failover::Args),
    /// Resident memory of the query side per subscriber that stopped
    /// reading.
    StalledSubscriptions(stalled::Args),
    /// Serves the floor: a no-op unary call and a bare broadcast stream.
    #[command(hide = true)]
    Floor(floor::Args),
    /// `SubmitReport` load on a running ingest service, for profiling it.
    Submit(ingest::Args),
    /// A new subscriber replaying a running query service's log from the
    /// start, for profiling catch-up.
    Replay(large::ReplayArgs),
    /// The delivery workload on a running `truce up` over an empty log, for
    /// profiling it.
    Deliver(delivery::DeliverArgs),
    /// Cold start over a kept log of `--reports` reports in `--data`,
    /// filled first when it holds none.
    ColdStart(coldstart::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Suite(args) => suite::run(args).await,
        Command::IdleSubscriptions(args) => idle::run(args).await,
        Command::Failover(args) => failover::run(args).await,
        Command::StalledSubscriptions(args) => stalled::run(args).await,
        Command::Floor(args) => floor::run(args).await,
        Command::Submit(args) => ingest::run(args).await,
        Command::Replay(args) => large::replay_command(args).await,
        Command::Deliver(args) => delivery::deliver_command(args).await,
        Command::ColdStart(args) => coldstart::run(args).await,
    }
}
