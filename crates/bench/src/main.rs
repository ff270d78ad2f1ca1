//! `truce-bench`: measurements that print a table. It starts what it
//! measures itself, on loopback, as separate processes, so the figures are
//! the servers' own.
//!
//! ```text
//! cargo build --release -p truce -p truce-bench
//! target/release/truce-bench idle-subscriptions --counts 1000,10000
//! ```

mod idle;
mod server;

use clap::{Parser, Subcommand};

/// Measures truce on this machine.
#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Resident memory of the query side per idle subscription.
    IdleSubscriptions(idle::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::IdleSubscriptions(args) => idle::run(args).await,
    }
}
