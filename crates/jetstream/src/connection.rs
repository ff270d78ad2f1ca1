//! The connection to NATS, and how long a write waits on it.
//!
//! Left to itself, async-nats waits 10 s for a JetStream API request and
//! 5 s for a publish acknowledgement, and a request whose connection died
//! waits out that time for an answer that cannot come any more. A stream
//! leader that dies takes the requests it was serving with it, so a
//! writer stalled for 10 s or more on every failover, well past the
//! cluster's own election. Here a request on the write path is given up
//! after [`REQUEST_TIMEOUT`], or as soon as the connection it went out on
//! is lost; the ingest sequencer then reads back what was stored and tries
//! again, and a caller waits no longer than [`ANSWER_WITHIN`] once the log
//! is failing.

use std::{future::Future, sync::Arc, time::Duration};

use async_nats::{Client, ConnectOptions, Event, connection::State};
use tokio::sync::watch;
use truce_log::LogError;

use crate::unavailable;

/// How long one request on the write path (a publish's acknowledgement, a
/// message or stream-info read from the stream's leader) is awaited. A
/// healthy stream answers in milliseconds, even with `sync_interval:
/// always` on three nodes; a leader that does not answer within this is
/// dead or being replaced, and waiting longer only delays noticing the
/// new one: writes resume at most this long after the cluster's election.
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(500);

/// How long an ingest caller waits for its answer while writes are not
/// getting through (the log unreachable, not answering or not confirming,
/// or other ingest replicas getting in first every time): by then it is
/// acknowledged, or told `UNAVAILABLE` (and to retry with the same
/// `client_report_id`). With each request bounded by [`REQUEST_TIMEOUT`],
/// a failure shows within half a second, so every caller is answered
/// within 1.5 s, whatever NATS does. While writes get through, callers
/// wait their turn however busy the log is: a bulk stream's thousands of
/// reports are queued, not refused.
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
        self.connected().await?;
        let mut losses = self.losses.clone();
        let lost = *losses.borrow_and_update();
        tokio::select! {
            answer = request => Ok(answer),
            _ = losses.wait_for(|now| *now != lost) => {
                Err(unavailable(format!("{what}: the connection to NATS was lost")))
            }
            () = tokio::time::sleep(REQUEST_TIMEOUT) => {
                Err(unavailable(format!("{what}: NATS did not answer within {REQUEST_TIMEOUT:?}")))
            }
        }
    }
}
