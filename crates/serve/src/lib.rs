//! What every truce server shares: structured logging controlled by
//! `RUST_LOG`, the shutdown signal, server reflection, and serving a router
//! on connections that write in batches, within the limits of
//! [`connections`], until shutdown, with a bounded drain. [`Servers`] wires
//! a process's ports the one way every truce command does.

pub mod admission;
pub mod auth;
mod batched;
pub mod connections;
mod content_type;
mod guard;
pub mod limits;
pub mod outbound;
mod ports;
pub mod refusals;
pub mod revocation;
mod servers;

pub use batched::BatchedWrites;
pub use guard::{Guarded, Watched};
pub use ports::Port;
pub use servers::{Listening, Servers};

/// The allocator every truce server binary installs: allocation is a large
/// share of a request's cost, and mimalloc's thread-local free lists make it
/// markedly cheaper than glibc's under many small, short-lived allocations.
pub use mimalloc::MiMalloc as Allocator;

use std::{future::Future, sync::Arc, time::Duration};

use tokio::{net::TcpListener, sync::watch};
use tokio_stream::{Stream, StreamExt, wrappers::TcpListenerStream};
use tonic::{service::RoutesBuilder, transport::Server};

/// How long in-flight calls may take to finish after shutdown begins.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest request message accepted, in bytes: a report is a few KB at most;
/// anything far larger is a mistake or an attack.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// Starts `tracing` output on stderr, filtered by `RUST_LOG` (default
/// `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn termination() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("ctrl-c received; shutting down"),
        () = term => tracing::info!("SIGTERM received; shutting down"),
    }
}

/// A signal that shutdown has begun, for streams to end themselves: a
/// server waits for open streams, so a stream that never ends would hold
/// shutdown until the drain timeout.
#[derive(Debug, Clone)]
pub struct Stopping(watch::Receiver<bool>);

impl Stopping {
    /// A signal and the sender that raises it.
    pub fn new() -> (watch::Sender<bool>, Stopping) {
        let (tx, rx) = watch::channel(false);
        (tx, Stopping(rx))
    }

    /// Resolves once shutdown has begun (or its sender is gone).
    pub async fn wait(&self) {
        let mut rx = self.0.clone();
        let _ = rx.wait_for(|stopping| *stopping).await;
    }
}

/// Serves `routes` on `listener` until `shutdown` resolves, then lets
/// in-flight calls finish for up to [`DRAIN_TIMEOUT`], and returns.
async fn serve(
    name: &'static str,
    routes: RoutesBuilder,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    auth: &auth::Authenticator,
) -> Result<(), tonic::transport::Error> {
    connections::files::raise_open_file_limit();
    match listener.local_addr() {
        Ok(address) => tracing::info!(service = name, %address, "listening"),
        Err(error) => tracing::warn!(service = name, %error, "listening on an unknown address"),
    }
    let (drained_tx, drained_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        let _ = drained_tx.send(());
    };
    let limits = auth.connections();
    let registry = connections::Registry::new(limits);
    let mut builder = Server::builder();
    if let Some(tls) = auth.tls() {
        builder = builder.tls_config(tls.clone().timeout(limits.handshake_timeout))?;
    }
    let routes = routes
        .routes()
        .into_axum_router()
        .layer(axum::middleware::from_fn(content_type::grpc_only))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&registry),
            connections::streams::count,
        ));
    let server = builder
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .max_concurrent_streams(limits.max_concurrent_streams)
        // tonic passes `None` on unless told, which switches h2's limit off.
        .http2_max_local_error_reset_streams(Some(limits.max_local_error_resets))
        .add_routes(routes.into())
        .serve_with_incoming_shutdown(connections::accept::accept(listener, registry), signal);
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result?,
        () = async {
            let _ = drained_rx.await;
            tokio::time::sleep(DRAIN_TIMEOUT).await;
        } => tracing::warn!(service = name, "drain timed out; closing remaining calls"),
    }
    tracing::info!(service = name, "stopped");
    Ok(())
}

/// Listens on `address`; a failure names the address and the flag that
/// sets it (the operating system's message alone does not say which).
pub async fn listen(address: std::net::SocketAddr, flag: &str) -> Result<TcpListener, ListenError> {
    TcpListener::bind(address).await.map_err(|source| ListenError {
        address,
        flag: flag.to_owned(),
        source,
    })
}

/// A port that could not be listened on.
#[derive(Debug)]
pub struct ListenError {
    address: std::net::SocketAddr,
    flag: String,
    source: std::io::Error,
}

impl std::fmt::Display for ListenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot listen on {} ({}): {}", self.address, self.flag, self.source)?;
        if self.source.kind() == std::io::ErrorKind::AddrInUse {
            write!(
                f,
                "; another process holds the port: stop it or choose another with {}",
                self.flag
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for ListenError {}

/// The connections `listener` accepts, with Nagle's algorithm off (or
/// every small response would wait out the peer's delayed ACK, ~40 ms) and
/// their writes batched ([`batched`]), and none of [`serve`]'s limits (for
/// the benchmark's floor, which measures the transport alone).
pub fn incoming(listener: TcpListener) -> impl Stream<Item = std::io::Result<BatchedWrites>> {
    TcpListenerStream::new(listener).map(|accepted| {
        let stream = accepted?;
        stream.set_nodelay(true)?;
        Ok(BatchedWrites::new(stream))
    })
}

/// A gRPC server's address as people type it: `host:port`, as grpcurl
/// takes it, or a URL (`http://host:port`, `https://host:port`). Returns
/// the URL (plaintext `http://` when no scheme is given); for clap's
/// `value_parser`.
pub fn grpc_url(text: &str) -> Result<String, String> {
    let url = match text.split_once("://") {
        Some(("http" | "https", _)) => text.to_owned(),
        Some(_) => return Err("must be host:port, http://host:port or https://host:port".to_owned()),
        None => format!("http://{text}"),
    };
    match url.parse::<tonic::transport::Uri>() {
        Ok(uri) if uri.host().is_some_and(|host| !host.is_empty()) => Ok(url),
        _ => Err("must be host:port, http://host:port or https://host:port".to_owned()),
    }
}

/// The network a client address stands for when counting what one client
/// holds: an IPv4 address as it is (an IPv4-mapped IPv6 address as its
/// IPv4 address), an IPv6 address as its /64, since one host is commonly
/// given a whole /64 and could otherwise take a new address per connection.
pub fn client_network(address: std::net::IpAddr) -> std::net::IpAddr {
    match address.to_canonical() {
        std::net::IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            std::net::IpAddr::V6(std::net::Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

/// How long the caller of `request` is still willing to wait, from its
/// `grpc-timeout` header (the gRPC deadline), if it sent one.
pub fn deadline<T>(request: &tonic::Request<T>) -> Option<Duration> {
    parse_grpc_timeout(request.metadata().get("grpc-timeout")?.to_str().ok()?)
}

/// Parses a `grpc-timeout` value: up to 8 digits and a unit (H, M, S, m,
/// u, n).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_taken_as_grpcurl_and_urls_give_them() {
        assert_eq!(grpc_url("127.0.0.1:50052").as_deref(), Ok("http://127.0.0.1:50052"));
        assert_eq!(grpc_url("localhost:50051").as_deref(), Ok("http://localhost:50051"));
        assert_eq!(
            grpc_url("http://127.0.0.1:50051").as_deref(),
            Ok("http://127.0.0.1:50051")
        );
        assert_eq!(
            grpc_url("https://truce.example:443").as_deref(),
            Ok("https://truce.example:443")
        );
        for bad in ["", "nats://127.0.0.1:4222", "http://", "a b:1"] {
            assert!(grpc_url(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn grpc_timeouts_parse_and_garbage_does_not() {
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        for bad in ["", "m", "12", "1x", "123456789m", "-1S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }
}
