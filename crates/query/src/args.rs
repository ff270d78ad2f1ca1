//! The query settings on the command line, shared by `truce-query` and
//! `truce up`.

use std::time::Duration;

use crate::{QuerySettings, admission::Caps};

/// Flags (and environment variables) that configure the query side.
#[derive(Debug, Clone, clap::Args)]
pub struct QueryArgs {
    /// Most concurrent subscriptions in all.
    #[arg(long, env = "TRUCE_MAX_SUBSCRIPTIONS", default_value_t = Caps::default().total)]
    pub max_subscriptions: usize,
    /// Most concurrent subscriptions of one caller.
    #[arg(long, env = "TRUCE_MAX_SUBSCRIPTIONS_PER_CALLER", default_value_t = Caps::default().per_caller)]
    pub max_subscriptions_per_caller: usize,
    /// Seconds a subscriber may take nothing before it is ended.
    #[arg(long, env = "TRUCE_STALL_TIMEOUT_SECS", default_value_t = QuerySettings::DEFAULT_STALL_TIMEOUT.as_secs())]
    pub stall_timeout_secs: u64,
    /// Seconds without word from the log before subscriptions end.
    #[arg(long, env = "TRUCE_STALE_TIMEOUT_SECS", default_value_t = QuerySettings::DEFAULT_STALE_TIMEOUT.as_secs())]
    pub stale_timeout_secs: u64,
}

impl QueryArgs {
    /// The settings these flags describe.
    pub fn settings(&self) -> QuerySettings {
        QuerySettings {
            caps: Caps {
                total: self.max_subscriptions,
                per_caller: self.max_subscriptions_per_caller,
            },
            stall_timeout: Duration::from_secs(self.stall_timeout_secs),
            stale_timeout: Duration::from_secs(self.stale_timeout_secs),
        }
    }
}
