//! A process's servers, wired the one way every truce command wires them:
//! one authenticator, watched for changes to the principals file; on each
//! port the routes every truce server starts with ([`base_routes`]) and
//! the services that port is given; and one shutdown for all of them. The
//! commands differ only in which services go on which port.

use std::{future::Future, net::SocketAddr, pin::Pin};

use tokio::{net::TcpListener, sync::watch};
use tonic::service::RoutesBuilder;
use tonic_health::server::HealthReporter;

use crate::{
    Port, Stopping,
    auth::{Access, Authenticator, RELOAD_POLL},
    ports::base_routes,
    serve,
};

/// The servers of one process, before they serve: the authenticator every
/// port shares, and the signal that shutdown has begun, for work that
/// starts before serving (following the log) to end with them.
#[derive(Debug)]
pub struct Servers {
    auth: Authenticator,
    stopping: Stopping,
    raise_stopping: watch::Sender<bool>,
}

/// One port: what it serves, where it listens, and what adds its services
/// to its routes.
pub struct Listening<'a> {
    port: Port,
    listener: TcpListener,
    add_services: AddServices<'a>,
}

/// Adds a port's services to its routes; the future it returns marks them
/// serving in the port's health.
type AddServices<'a> =
    Box<dyn FnOnce(&mut RoutesBuilder, &HealthReporter, &Authenticator, Stopping) -> MarkServing<'a> + Send + 'a>;

type MarkServing<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

impl std::fmt::Debug for Listening<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listening")
            .field("port", &self.port)
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

impl<'a> Listening<'a> {
    /// `port` on `listener`, with the services `add_services` adds to the
    /// port's routes, given its health reporter, the authenticator and the
    /// shutdown signal; the future it returns marks them serving.
    pub fn new<F, Fut>(port: Port, listener: TcpListener, add_services: F) -> Listening<'a>
    where
        F: FnOnce(&mut RoutesBuilder, &HealthReporter, &Authenticator, Stopping) -> Fut + Send + 'a,
        Fut: Future<Output = ()> + Send + 'a,
    {
        Listening {
            port,
            listener,
            add_services: Box::new(move |routes, health, auth, stopping| {
                Box::pin(add_services(routes, health, auth, stopping))
            }),
        }
    }
}

impl Servers {
    /// Starts the authenticator, and keeps it reading the principals file
    /// as it changes.
    pub fn start(access: impl Into<Access>) -> Result<Servers, truce_auth::AuthError> {
        let auth = Authenticator::start(access)?;
        auth.watch(RELOAD_POLL);
        let (raise_stopping, stopping) = Stopping::new();
        Ok(Servers {
            auth,
            stopping,
            raise_stopping,
        })
    }

    /// Raised once shutdown begins.
    pub fn stopping(&self) -> Stopping {
        self.stopping.clone()
    }

    /// Serves every port until `shutdown` resolves; then raises
    /// [`Servers::stopping`], so streams end, and stops every server (each
    /// lets its calls drain). Each port points callers of the other port's
    /// services to the other listener's address, when it is one of these.
    /// Returns once every server has stopped, with the first port's error
    /// if any failed.
    pub async fn serve(
        self,
        ports: Vec<Listening<'_>>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let addresses: Vec<(Port, Option<SocketAddr>)> = ports
            .iter()
            .map(|listening| (listening.port, listening.listener.local_addr().ok()))
            .collect();
        let mut ready = Vec::with_capacity(ports.len());
        for listening in ports {
            let other = addresses
                .iter()
                .find(|(port, _)| *port != listening.port)
                .and_then(|(_, address)| *address);
            let (health, mut routes) = base_routes(listening.port, other)?;
            (listening.add_services)(&mut routes, &health, &self.auth, self.stopping.clone()).await;
            ready.push((listening.port, routes, listening.listener));
        }
        let (stop, stopped) = watch::channel(false);
        let raise_stopping = self.raise_stopping;
        // One signal stops every server.
        let signal = async move {
            shutdown.await;
            let _ = raise_stopping.send(true);
            let _ = stop.send(true);
        };
        let servers = ready.into_iter().map(|(port, routes, listener)| {
            let mut stopped = stopped.clone();
            let shutdown = async move {
                let _ = stopped.wait_for(|stopped| *stopped).await;
            };
            serve(port.name(), routes, listener, shutdown, &self.auth)
        });
        let mut servers = std::pin::pin!(futures_util::future::join_all(servers));
        let results = tokio::select! {
            results = &mut servers => results,
            () = signal => servers.await,
        };
        for result in results {
            result?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tonic::transport::{Channel, Endpoint};
    use truce_proto::v1::{self, ingest_service_client::IngestServiceClient, query_service_client::QueryServiceClient};

    use super::*;
    use crate::auth::AuthMode;

    async fn channel(address: SocketAddr) -> Channel {
        let endpoint = Endpoint::from_shared(format!("http://{address}")).expect("an endpoint");
        loop {
            match endpoint.connect().await {
                Ok(channel) => return channel,
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    #[tokio::test]
    async fn each_port_points_to_the_other_and_one_shutdown_stops_both() {
        let ingest = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let query = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let (ingest_at, query_at) = (ingest.local_addr().expect("bound"), query.local_addr().expect("bound"));
        let servers = Servers::start(AuthMode::InsecureLoopback).expect("started");
        let stopping = servers.stopping();
        let ports = vec![
            Listening::new(Port::Ingest, ingest, |_, _, _, _| async {}),
            Listening::new(Port::Query, query, |_, _, _, _| async {}),
        ];
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(servers.serve(ports, async move {
            let _ = stopped.await;
        }));

        let refused = IngestServiceClient::new(channel(query_at).await)
            .submit_report(v1::SubmitReportRequest::default())
            .await
            .expect_err("not served here");
        assert_eq!(refused.code(), tonic::Code::Unimplemented);
        assert!(
            refused.message().contains(&format!("the ingest port, {ingest_at}")),
            "{refused:?}"
        );
        let refused = QueryServiceClient::new(channel(ingest_at).await)
            .list_incidents(v1::ListIncidentsRequest::default())
            .await
            .expect_err("not served here");
        assert!(
            refused.message().contains(&format!("the query port, {query_at}")),
            "{refused:?}"
        );

        stop.send(()).expect("still serving");
        tokio::time::timeout(Duration::from_secs(5), stopping.wait())
            .await
            .expect("streams are told to stop");
        tokio::time::timeout(Duration::from_secs(5), serving)
            .await
            .expect("both servers stop")
            .expect("the servers' task")
            .expect("served");
    }
}
