//! The query service: answers queries over incidents and streams live
//! changes.
//!
//! Flow: a follower builds a [`View`] from the log, into the
//! [`QueryState`] every call reads: [`follow_local`] reads the ingest
//! service's own log in one process; [`follow_remote`] keeps a verified
//! local replica (`replica`), fed by a pump (`pump`) from
//! `LogService.ReadLog` or from JetStream. Each applied event is broadcast
//! as a [`LiveChange`] (`live`). `service` answers `Get`, `List` and
//! `Summarize` from the view; `subscribe` runs each subscription as a
//! catch-up subscription over the log and the changes `fanout` hands it.

pub mod args;
mod fanout;
mod follow_local;
mod held;
mod live;
mod outbox;
mod pump;
mod recent;
mod replica;
mod report_places;
mod service;
mod startup;
mod state;
mod subscribe;
#[cfg(test)]
mod testing;
mod token;
mod upstream;
mod view;
mod view_event;

use std::{future::Future, sync::Arc, time::Duration};

use tokio::net::TcpListener;
use tonic::service::RoutesBuilder;
use truce_proto::v1::query_service_server::QueryServiceServer;
use truce_serve::{
    Listening, MAX_MESSAGE_BYTES, Port, Servers, Stopping,
    admission::{Caps, StreamLimits},
    auth::{Access, Authenticator},
};

pub use follow_local::follow_local;
pub use live::LiveChange;
pub use replica::follow_remote;
pub use state::QueryState;
pub use upstream::{IngestUpstream, Source, Upstream};
pub use view::View;

/// Default address of the query service.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50052";
/// Default ingest service to follow.
pub const DEFAULT_UPSTREAM: &str = "http://127.0.0.1:50051";
/// Default data directory of a standalone query service.
pub const DEFAULT_DATA_DIR: &str = "truce-query-data";

/// How the query service treats its subscribers.
#[derive(Debug, Clone, Copy)]
pub struct QuerySettings {
    /// Caps on concurrent subscriptions: in all, per party, per address.
    pub caps: Caps,
    /// A subscriber that takes nothing for this long is ended with
    /// RESOURCE_EXHAUSTED and its resume token.
    pub stall_timeout: Duration,
    /// When the log has not been heard from for this long, subscriptions
    /// end UNAVAILABLE (so clients move to a current replica).
    pub stale_timeout: Duration,
}

impl QuerySettings {
    /// Default stall timeout.
    pub const DEFAULT_STALL_TIMEOUT: Duration = StreamLimits::DEFAULT_STALL_TIMEOUT;
    /// Default stale timeout.
    pub const DEFAULT_STALE_TIMEOUT: Duration = Duration::from_secs(30);
}

impl Default for QuerySettings {
    fn default() -> Self {
        QuerySettings {
            caps: Caps::default(),
            stall_timeout: Self::DEFAULT_STALL_TIMEOUT,
            stale_timeout: Self::DEFAULT_STALE_TIMEOUT,
        }
    }
}

/// Adds the query service over `state` to `routes`; the returned future
/// marks it serving in `health`.
pub fn add_services(
    routes: &mut RoutesBuilder,
    state: Arc<QueryState>,
    settings: &QuerySettings,
    health: &tonic_health::server::HealthReporter,
    auth: &Authenticator,
    stopping: Stopping,
) -> impl Future<Output = ()> + use<> {
    tokio::spawn(report_staleness(
        Arc::clone(&state),
        settings.stale_timeout,
        health.clone(),
        stopping.clone(),
    ));
    let queries = service::Routes::new(
        service::Queries::new(state, settings, auth.clone(), stopping),
        MAX_MESSAGE_BYTES,
    );
    routes.add_service(auth.guard(queries));
    let health = health.clone();
    async move {
        health.set_serving::<QueryServiceServer<service::Queries>>().await;
    }
}

/// Marks the query service NOT_SERVING in `health` while the log it follows
/// has not been heard from for `stale_after`, so load balancers send
/// clients to a current replica; it keeps answering those who still ask.
async fn report_staleness(
    state: Arc<QueryState>,
    stale_after: Duration,
    health: tonic_health::server::HealthReporter,
    stopping: Stopping,
) {
    let mut serving = true;
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = stopping.wait() => return,
        }
        let silent = Duration::from_nanos(
            u64::try_from(
                truce_domain::Timestamp::from_system(std::time::SystemTime::now()).0 - state.log_heard_at().0,
            )
            .unwrap_or(0),
        );
        let fresh = silent < stale_after;
        if fresh != serving {
            serving = fresh;
            if fresh {
                tracing::info!("the log is heard from again; serving");
                health.set_serving::<QueryServiceServer<service::Queries>>().await;
            } else {
                tracing::warn!(?silent, "the log has gone silent; health says NOT_SERVING");
                health.set_not_serving::<QueryServiceServer<service::Queries>>().await;
            }
        }
    }
}

/// Serves a standalone query service following `upstream` until
/// `shutdown`.
pub async fn run(
    upstream: Upstream,
    settings: QuerySettings,
    auth: impl Into<Access>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let servers = Servers::start(auth)?;
    let state = follow_remote(upstream, servers.stopping()).await?;
    let query = Listening::new(Port::Query, listener, move |routes, health, auth, stopping| {
        add_services(routes, state, &settings, health, auth, stopping)
    });
    servers.serve(vec![query], shutdown).await
}
