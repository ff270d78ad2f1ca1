//! What a connection may cost the server, and how each is let in, watched
//! and closed.
//!
//! A client that opens connections and sends nothing, or opens a
//! connection and never uses it, or opens streams without end, must not
//! take the file descriptors, memory or tasks other callers need:
//!
//! - [`accept`]: at most [`ConnectionLimits::per_address`] live connections
//!   per peer address (the rest are closed at once), TCP keepalive, and a
//!   pause instead of a spin when accepting fails (out of descriptors);
//! - [`watch`]: a connection that has not sent the HTTP/2 preface within
//!   the handshake timeout, or has had no stream open for the idle
//!   timeout, is closed;
//! - [`streams`]: counts each connection's open streams for the idle
//!   timeout;
//! - [`files`]: the open-file limit, raised to the hard limit at start;
//! - HTTP/2's own limits, set on the server in [`crate::serve`]:
//!   `SETTINGS_MAX_CONCURRENT_STREAMS`, and the number of streams a client
//!   may make the server reset for its errors before it is sent a GOAWAY
//!   (CVE-2025-8671, "MadeYouReset").

pub(crate) mod accept;
pub(crate) mod files;
pub(crate) mod streams;
pub(crate) mod watch;

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex, MutexGuard, OnceLock},
    time::Duration,
};

use tokio::time::Instant;

/// What connections may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Live connections from one peer address; 0: unlimited.
    pub per_address: usize,
    /// How long a new connection has to send the HTTP/2 preface (and, with
    /// TLS, to finish the TLS handshake).
    pub handshake_timeout: Duration,
    /// How long a connection may stay without an open stream.
    pub idle_timeout: Duration,
    /// Streams one connection may have open at once (advertised as
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`; more are refused).
    pub max_concurrent_streams: u32,
    /// Streams the server may reset because of a client's errors before it
    /// sends a GOAWAY and closes the connection.
    pub max_local_error_resets: usize,
    /// Idle time before TCP keepalive probes, which find peers that are
    /// gone without a word.
    pub tcp_keepalive: Duration,
}

impl Default for ConnectionLimits {
    /// Room for any real client (a dashboard with a thousand subscriptions
    /// on one connection, a few hundred processes behind one address),
    /// none for a flood.
    fn default() -> Self {
        ConnectionLimits {
            per_address: 256,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            max_concurrent_streams: 1000,
            // h2's own default, which tonic switches off unless told.
            max_local_error_resets: 1024,
            tcp_keepalive: Duration::from_secs(60),
        }
    }
}

/// The connection flags (and environment variables) every server takes.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionArgs {
    /// Live connections from one client address; more are closed at once.
    /// 0: unlimited.
    #[arg(long, env = "TRUCE_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = ConnectionLimits::default().per_address)]
    pub max_connections_per_address: usize,
    /// Seconds a new connection has to send the HTTP/2 preface (and finish
    /// the TLS handshake).
    #[arg(long, env = "TRUCE_HANDSHAKE_TIMEOUT_SECS", default_value_t = ConnectionLimits::default().handshake_timeout.as_secs())]
    pub handshake_timeout_secs: u64,
    /// Seconds a connection may stay without an open call before it is
    /// closed.
    #[arg(long, env = "TRUCE_IDLE_TIMEOUT_SECS", default_value_t = ConnectionLimits::default().idle_timeout.as_secs())]
    pub idle_timeout_secs: u64,
    /// Calls (HTTP/2 streams) one connection may have open at once.
    #[arg(long, env = "TRUCE_MAX_CONCURRENT_STREAMS", default_value_t = ConnectionLimits::default().max_concurrent_streams)]
    pub max_concurrent_streams: u32,
    /// Streams a client may make the server reset by its errors before the
    /// connection is closed with a GOAWAY.
    #[arg(long, env = "TRUCE_MAX_LOCAL_ERROR_RESETS", default_value_t = ConnectionLimits::default().max_local_error_resets)]
    pub max_local_error_resets: usize,
    /// Seconds of TCP silence before keepalive probes.
    #[arg(long, env = "TRUCE_TCP_KEEPALIVE_SECS", default_value_t = ConnectionLimits::default().tcp_keepalive.as_secs())]
    pub tcp_keepalive_secs: u64,
}

impl ConnectionArgs {
    /// The limits these flags describe.
    pub fn limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            per_address: self.max_connections_per_address,
            handshake_timeout: Duration::from_secs(self.handshake_timeout_secs),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            max_concurrent_streams: self.max_concurrent_streams,
            max_local_error_resets: self.max_local_error_resets,
            tcp_keepalive: Duration::from_secs(self.tcp_keepalive_secs),
        }
    }
}

/// One server's live connections: how many per peer address, and how
/// many streams each has open.
#[derive(Debug)]
pub(crate) struct Registry {
    limits: ConnectionLimits,
    // Held only to update a count or look a connection up.
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    per_address: HashMap<IpAddr, usize>,
    /// By (local, peer) address, as a request's connect info names them.
    connections: HashMap<(SocketAddr, SocketAddr), Arc<Activity>>,
}

/// A connection's open streams, and whether it has room for more bytes.
#[derive(Debug)]
pub(crate) struct Activity {
    state: Mutex<ActivityState>,
    backlog: OnceLock<crate::batched::Backlog>,
}

#[derive(Debug)]
struct ActivityState {
    open: usize,
    /// When the last stream ended (or the connection was accepted).
    idle_since: Instant,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            state: Mutex::new(ActivityState {
                open: 0,
                idle_since: Instant::now(),
            }),
            backlog: OnceLock::new(),
        }
    }

    /// The connection's writes, once it has them.
    pub(crate) fn set_backlog(&self, backlog: crate::batched::Backlog) {
        let _ = self.backlog.set(backlog);
    }

    pub(crate) fn backlog(&self) -> Option<&crate::batched::Backlog> {
        self.backlog.get()
    }

    fn lock(&self) -> MutexGuard<'_, ActivityState> {
        // Nothing panics while holding it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Since when no stream has been open, or `None` while one is.
    pub(crate) fn idle_since(&self) -> Option<Instant> {
        let state = self.lock();
        (state.open == 0).then_some(state.idle_since)
    }

    pub(crate) fn opened(&self) {
        self.lock().open += 1;
    }

    pub(crate) fn closed(&self) {
        let mut state = self.lock();
        state.open = state.open.saturating_sub(1);
        if state.open == 0 {
            state.idle_since = Instant::now();
        }
    }
}

/// A connection's place in the registry, given back on drop.
#[derive(Debug)]
pub(crate) struct Admitted {
    registry: Arc<Registry>,
    key: (SocketAddr, SocketAddr),
    pub(crate) activity: Arc<Activity>,
}

impl Registry {
    pub(crate) fn new(limits: ConnectionLimits) -> Arc<Registry> {
        Arc::new(Registry {
            limits,
            inner: Mutex::default(),
        })
    }

    pub(crate) fn limits(&self) -> &ConnectionLimits {
        &self.limits
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while holding it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a connection from `peer` to `local`, or refuses it when its
    /// address has [`ConnectionLimits::per_address`] already.
    pub(crate) fn admit(self: &Arc<Self>, local: SocketAddr, peer: SocketAddr) -> Option<Admitted> {
        let address = crate::client_network(peer.ip());
        let activity = Arc::new(Activity::new());
        let mut inner = self.lock();
        let count = inner.per_address.entry(address).or_insert(0);
        if self.limits.per_address != 0 && *count >= self.limits.per_address {
            return None;
        }
        *count += 1;
        inner.connections.insert((local, peer), Arc::clone(&activity));
        Some(Admitted {
            registry: Arc::clone(self),
            key: (local, peer),
            activity,
        })
    }

    /// The connection from `peer` to `local`, while it is open.
    pub(crate) fn find(&self, local: SocketAddr, peer: SocketAddr) -> Option<Arc<Activity>> {
        self.lock().connections.get(&(local, peer)).cloned()
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut inner = self.registry.lock();
        inner.connections.remove(&self.key);
        let address = crate::client_network(self.key.1.ip());
        if let Some(count) = inner.per_address.get_mut(&address) {
            *count -= 1;
            if *count == 0 {
                inner.per_address.remove(&address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_gets_its_cap_and_a_closed_connection_gives_its_place_back() {
        let registry = Registry::new(ConnectionLimits {
            per_address: 2,
            ..Default::default()
        });
        let local: SocketAddr = "127.0.0.1:50051".parse().unwrap();
        let peer = |address: &str| address.parse::<SocketAddr>().unwrap();
        let first = registry.admit(local, peer("10.0.0.1:1000")).expect("first");
        let _second = registry.admit(local, peer("10.0.0.1:1001")).expect("second");
        assert!(registry.admit(local, peer("10.0.0.1:1002")).is_none());
        // The same address written as IPv4-mapped IPv6 is the same address.
        assert!(registry.admit(local, peer("[::ffff:10.0.0.1]:1003")).is_none());
        let _other = registry.admit(local, peer("10.0.0.2:1000")).expect("another address");
        // One IPv6 /64 is one client: a host holds a whole /64.
        let _v6 = registry
            .admit(local, peer("[2001:db8:0:1::1]:1000"))
            .expect("a first v6");
        let _v6_again = registry
            .admit(local, peer("[2001:db8:0:1::2]:1000"))
            .expect("its /64's second");
        assert!(registry.admit(local, peer("[2001:db8:0:1:ffff::3]:1000")).is_none());
        let _next = registry
            .admit(local, peer("[2001:db8:0:2::1]:1000"))
            .expect("another /64");
        assert!(registry.find(local, peer("10.0.0.1:1000")).is_some());
        drop(first);
        assert!(registry.find(local, peer("10.0.0.1:1000")).is_none());
        let _third = registry.admit(local, peer("10.0.0.1:1002")).expect("a place was freed");
    }

    #[test]
    fn a_connection_is_idle_only_while_no_stream_is_open() {
        let activity = Activity::new();
        assert!(activity.idle_since().is_some());
        activity.opened();
        activity.opened();
        activity.closed();
        assert!(activity.idle_since().is_none());
        activity.closed();
        assert!(activity.idle_since().is_some());
    }
}
