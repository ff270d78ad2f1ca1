//! The load client: every request encoded once, before the measurement,
//! and sent as the same bytes to whichever system is measured. During a
//! measurement the client's cost per call is the RPC layer's own and, where
//! a receipt is timed, a copy of about 450 bytes to write the send time in:
//! small, and the same for every system, so it depresses none more than
//! another.

use std::{ops::Range, sync::Arc};

use anyhow::Context;
use async_nats::{Subject, jetstream};
use prost::{Message, bytes::Bytes};
use tonic::{codegen::http::uri::PathAndQuery, transport::Channel};
use truce_proto::frame::{Frame, FrameCodec};

use crate::{etcd, load, nats, reports, stamp::Stamped};

/// Connections a client fleet spreads its calls over.
pub(crate) const CONNECTIONS: usize = 4;

/// What the requests are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `SubmitReport` of truce and the floors, under keys unique to a run.
    Submit,
    /// etcd `Put` of the report under its category's key prefix.
    Put,
    /// A JetStream publish of the report on its subject.
    Publish,
}

/// One request, encoded.
#[derive(Debug, Clone)]
pub(crate) struct Encoded {
    pub(crate) body: Stamped,
    /// Where a JetStream publish goes.
    subject: Option<Subject>,
}

/// Requests for a range of report numbers, encoded before a measurement.
/// Submissions are each used once (truce answers a key it has seen as a
/// replay, which is other work); etcd Puts and JetStream publishes may be
/// sent again, as the same write of new data would be.
#[derive(Debug, Clone)]
pub(crate) struct Pool {
    items: Arc<Vec<Encoded>>,
    cycles: bool,
}

impl Pool {
    /// Encodes the requests of `kind` for reports `range`, on every core;
    /// submissions under keys unique to `run`.
    pub(crate) fn encode(kind: Kind, run: &str, range: Range<u64>) -> anyhow::Result<Pool> {
        let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get) as u64;
        let chunk = (range.end - range.start).div_ceil(threads).max(1);
        let parts: Vec<anyhow::Result<Vec<Encoded>>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    let from = (range.start + t * chunk).min(range.end);
                    let to = (from + chunk).min(range.end);
                    scope.spawn(move || (from..to).map(|n| encode_one(kind, run, n)).collect())
                })
                .collect();
            workers
                .into_iter()
                .map(|w| {
                    w.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("an encoder thread panicked")))
                })
                .collect()
        });
        let mut items = Vec::with_capacity((range.end - range.start) as usize);
        for part in parts {
            items.extend(part?);
        }
        anyhow::ensure!(!items.is_empty(), "no requests to encode");
        Ok(Pool {
            items: Arc::new(items),
            cycles: kind != Kind::Submit,
        })
    }

    /// The request of call `i` (the `i`th report of the range).
    pub(crate) fn get(&self, i: u64) -> anyhow::Result<&Encoded> {
        let len = self.items.len() as u64;
        let i = if self.cycles { i % len } else { i };
        self.items
            .get(i as usize)
            .with_context(|| format!("only {len} requests were encoded ahead, and each is sent once"))
    }
}

fn encode_one(kind: Kind, run: &str, n: u64) -> anyhow::Result<Encoded> {
    let (bytes, subject) = match kind {
        Kind::Submit => (reports::request(run, n).encode_to_vec(), None),
        Kind::Put => (
            etcd::PutRequest {
                key: reports::etcd_key(n),
                value: reports::payload(n),
            }
            .encode_to_vec(),
            None,
        ),
        Kind::Publish => (reports::payload(n), Some(Subject::from(nats::subject(n)))),
    };
    let body = Stamped::new(bytes, n).with_context(|| format!("report {n} has no send-time slot"))?;
    Ok(Encoded { body, subject })
}

/// What a `SubmitReport` answer is read for: nothing but success, so no
/// field is decoded.
#[derive(Clone, PartialEq, prost::Message)]
struct Answered {}

/// A client of one system, cheap to clone.
#[derive(Clone)]
pub(crate) enum Writer {
    Submit(Arc<Vec<tonic::client::Grpc<Channel>>>),
    Put(Arc<Vec<tonic::client::Grpc<Channel>>>),
    Publish(Arc<jetstream::Context>),
}

impl Writer {
    /// `SubmitReport` (truce or a floor) or etcd `Put` over [`CONNECTIONS`]
    /// connections to `endpoint`.
    pub(crate) async fn grpc(kind: Kind, endpoint: &str) -> anyhow::Result<Writer> {
        let clients = Arc::new(
            load::channels(endpoint, CONNECTIONS)
                .await?
                .into_iter()
                .map(tonic::client::Grpc::new)
                .collect(),
        );
        Ok(match kind {
            Kind::Submit => Writer::Submit(clients),
            Kind::Put => Writer::Put(clients),
            Kind::Publish => anyhow::bail!("JetStream is written through its own client"),
        })
    }

    /// Sends `request` (`body` is its bytes, perhaps stamped) as call `k`;
    /// returns once it is acknowledged.
    pub(crate) async fn send(&self, k: u64, request: &Encoded, body: Bytes) -> anyhow::Result<()> {
        match self {
            Writer::Submit(clients) => {
                let mut grpc = clients[k as usize % clients.len()].clone();
                unary::<Answered>(&mut grpc, "/truce.v1.IngestService/SubmitReport", body).await?;
            }
            Writer::Put(clients) => {
                let mut grpc = clients[k as usize % clients.len()].clone();
                put(&mut grpc, body).await?;
            }
            Writer::Publish(js) => {
                let subject = request.subject.clone().context("a publish without a subject")?;
                js.as_ref()
                    .publish(subject, body)
                    .await
                    .context("publishing")?
                    .await
                    .context("waiting for the acknowledgement")?;
            }
        }
        Ok(())
    }
}

/// One unary call with an encoded request.
async fn unary<R: Message + Default + Send + 'static>(
    grpc: &mut tonic::client::Grpc<Channel>,
    path: &'static str,
    body: Bytes,
) -> Result<R, tonic::Status> {
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    grpc.unary(
        tonic::Request::new(Frame::from_encoded(body)),
        PathAndQuery::from_static(path),
        FrameCodec::<R>::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

/// etcd `KV/Put`. etcd refuses writes with "too many requests" while
/// applying lags committing by more than 5,000 entries; the Put is retried
/// after a pause, as etcd's own client would be told to, and the time
/// counts.
async fn put(grpc: &mut tonic::client::Grpc<Channel>, body: Bytes) -> Result<(), tonic::Status> {
    let mut refusals = 0;
    loop {
        match unary::<etcd::PutResponse>(grpc, "/etcdserverpb.KV/Put", body.clone()).await {
            Ok(_) => return Ok(()),
            Err(status) if status.message().contains("too many requests") && refusals < 6000 => {
                refusals += 1;
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Err(status) => return Err(status),
        }
    }
}
