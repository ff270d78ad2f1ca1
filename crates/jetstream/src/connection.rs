//! The connection to NATS, and how long a write waits on it.
//!
//! Left to itself, async-nats waits 10 s for a JetStream API request and
//! 5 s for a publish acknowledgement, and a request whose connection died
//! waits out that time for an answer that cannot come any more. A stream
//! leader that dies takes the requests it was serving with it, so a
//! writer stalled for 10 s or more on every failover, well past the
//! cluster's own election. Here a request on the write path is given up
//! after [`REQUEST_TIMEOUT`], or as soon as the connection it went out on
//! is lost; an entry whose acknowledgement did not come is sent again for
//! the server's own answer, the ingest sequencer reads back what it still
//! does not know, and a caller is answered within [`ANSWER_WITHIN`] of
//! the last batch that kept up.

use std::{future::Future, sync::Arc, time::Duration};

use async_nats::{Client, ConnectOptions, Event, connection::State};
use tokio::sync::watch;
use truce_log::LogError;

use crate::unavailable;

/// How long one request on the write path (a publish's acknowledgement, a
/// message or stream-info read from the stream's leader) is awaited. A
/// healthy stream answers in milliseconds; a leader that does not answer
/// within this is dead, being replaced or overloaded, and waiting longer
/// only delays noticing a new one. An acknowledgement that is merely late
/// (a disk syncing every message) costs a second send, answered as a
/// duplicate: not a write in doubt.
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(500);

/// How long an ingest caller waits with no batch completing in time: by
/// then it is acknowledged, or told `UNAVAILABLE` (the write not stored,
/// or, if it may yet be, how to retry it safely). A batch completes in
/// time when it takes at most three quarters of this, so a caller waits
/// at most 1.75 s whatever NATS does (slow, silent, or electing a
/// leader). While batches complete in time, callers wait their turn
/// however busy the log is: a bulk stream's thousands of reports are
/// queued, not refused.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(1);

/// How often the client pings its server. A server that vanished without
/// closing the connection (a host lost, a network cut) is given up after
/// two unanswered pings, and the client moves to another node; the
/// default, 60 s, kept writes going to a dead server for minutes.
const PING_INTERVAL: Duration = Duration::from_secs(1);

/// How long one attempt to connect to a server may take.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(3);

/// A client of the NATS servers, and a count of the connections it lost,
/// to notice a lost connection while a request waits on it.
#[derive(Debug, Clone)]
pub(crate) struct Connection {
    client: Client,
    losses: watch::Receiver<u64>,
}

impl Connection {
    /// Connects to the first of `urls` that answers (retrying until one
    /// does), and to the others in turn, and to the servers they name,
    /// when it is lost.
    pub(crate) async fn open(urls: Vec<&str>) -> Result<Connection, async_nats::ConnectError> {
        let (sender, losses) = watch::channel(0u64);
        let sender = Arc::new(sender);
        let client = ConnectOptions::new()
            .name("truce")
            .connection_timeout(CONNECTION_TIMEOUT)
            .ping_interval(PING_INTERVAL)
            .retry_on_initial_connect()
            .event_callback(move |event| {
                let sender = Arc::clone(&sender);
                async move {
                    if matches!(event, Event::Disconnected) {
                        sender.send_modify(|lost| *lost += 1);
                    }
                }
            })
            .connect(urls)
            .await?;
        Ok(Connection { client, losses })
    }

    /// The client.
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// Whether the client is connected now.
    pub(crate) fn is_connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    /// Waits up to [`REQUEST_TIMEOUT`] for the client to be connected:
    /// moving to another node after losing one takes milliseconds.
    /// Nothing may be sent while it is not: the client would buffer it and
    /// send it on reconnecting, after the caller was told it failed.
    pub(crate) async fn connected(&self) -> Result<(), LogError> {
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
        while !self.is_connected() {
            if tokio::time::Instant::now() >= deadline {
                return Err(unavailable("not connected to NATS"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Sends `request` once connected and waits for its answer, for at
    /// most [`REQUEST_TIMEOUT`], and no longer than the connection it went
    /// out on lasts. `what` names it in the error.
    pub(crate) async fn request<T>(&self, what: &str, request: impl Future<Output = T>) -> Result<T, LogError> {
        self.request_within(what, request, REQUEST_TIMEOUT).await
    }

    /// As [`Self::request`], waiting up to `within` for the answer.
    pub(crate) async fn request_within<T>(
        &self,
        what: &str,
        request: impl Future<Output = T>,
        within: Duration,
    ) -> Result<T, LogError> {
        self.connected().await?;
        let mut losses = self.losses.clone();
        let lost = *losses.borrow_and_update();
        tokio::select! {
            answer = request => Ok(answer),
            _ = losses.wait_for(|now| *now != lost) => {
                Err(unavailable(format!("{what}: the connection to NATS was lost")))
            }
            () = tokio::time::sleep(within) => {
                Err(unavailable(format!("{what}: NATS did not answer within {within:?}")))
            }
        }
    }

    /// Whether the server this client is connected to serves batched
    /// direct gets (nats-server 2.11 on); an older one answers the first
    /// message only.
    pub(crate) fn serves_batches(&self) -> bool {
        serves_batches(&self.client.server_info().version)
    }
}

/// Whether nats-server `version` serves batched direct gets.
fn serves_batches(version: &str) -> bool {
    let mut parts = version.trim_start_matches('v').split('.').map(|part| {
        part.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse::<u32>()
            .unwrap_or(0)
    });
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major, minor) >= (2, 11)
}

#[cfg(test)]
mod tests {
    use super::serves_batches;

    #[test]
    fn batched_direct_gets_are_asked_of_servers_from_2_11() {
        for (version, serves) in [
            ("2.9.10", false),
            ("2.10.22", false),
            ("2.11.0", true),
            ("2.15.1", true),
            ("v2.12.0-RC.1", true),
            ("3.0.0", true),
            ("", false),
        ] {
            assert_eq!(serves_batches(version), serves, "{version}");
        }
    }
}
