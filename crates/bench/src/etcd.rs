//! etcd as a peer: a single-node server started here (Debian's etcd-server,
//! which fsyncs its write-ahead log before answering a Put), and the two
//! calls of its v3 API the bench makes, `KV/Put` and `Watch/Watch`. The
//! messages are the subset of etcd's `rpc.proto` and `kv.proto` those calls
//! use, with etcd's field numbers.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context;
use tokio_stream::StreamExt as _;
use tonic::{codegen::http::uri::PathAndQuery, transport::Channel};
use tonic_prost::ProstCodec;

use crate::procs::{self, Proc, Scratch};

/// `etcdserverpb.ResponseHeader`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ResponseHeader {
    #[prost(uint64, tag = "1")]
    pub(crate) cluster_id: u64,
    #[prost(uint64, tag = "2")]
    pub(crate) member_id: u64,
    #[prost(int64, tag = "3")]
    pub(crate) revision: i64,
    #[prost(uint64, tag = "4")]
    pub(crate) raft_term: u64,
}

/// `etcdserverpb.PutRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PutRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub(crate) key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) value: Vec<u8>,
}

/// `etcdserverpb.PutResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PutResponse {
    #[prost(message, optional, tag = "1")]
    pub(crate) header: Option<ResponseHeader>,
}

/// `etcdserverpb.WatchCreateRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct WatchCreateRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub(crate) key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) range_end: Vec<u8>,
    #[prost(int64, tag = "3")]
    pub(crate) start_revision: i64,
}

/// `etcdserverpb.WatchRequest` with its `create_request` arm.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct WatchRequest {
    #[prost(message, optional, tag = "1")]
    pub(crate) create_request: Option<WatchCreateRequest>,
}

/// `mvccpb.KeyValue`, of which a watcher reads the revision of the write
/// and, of the value (the report), only its summary, as the truce
/// subscribers do.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct KeyValue {
    #[prost(int64, tag = "3")]
    pub(crate) mod_revision: i64,
    #[prost(message, optional, tag = "5")]
    pub(crate) value: Option<crate::stamp::Carried>,
}

/// `mvccpb.Event`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Event {
    #[prost(message, optional, tag = "2")]
    pub(crate) kv: Option<KeyValue>,
}

/// `etcdserverpb.WatchResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct WatchResponse {
    #[prost(message, optional, tag = "1")]
    pub(crate) header: Option<ResponseHeader>,
    #[prost(int64, tag = "2")]
    pub(crate) watch_id: i64,
    #[prost(bool, tag = "3")]
    pub(crate) created: bool,
    #[prost(bool, tag = "4")]
    pub(crate) canceled: bool,
    #[prost(message, repeated, tag = "11")]
    pub(crate) events: Vec<Event>,
}

/// A client of the two calls.
#[derive(Clone)]
pub(crate) struct Client(tonic::client::Grpc<Channel>);

impl Client {
    /// Over `channel`.
    pub(crate) fn new(channel: Channel) -> Client {
        Client(tonic::client::Grpc::new(channel))
    }

    /// `KV/Put`: the revision of the write.
    /// etcd refuses writes with "too many requests" while applying lags
    /// committing by more than 5,000 entries; the Put is retried after a
    /// pause, as etcd's own client would be told to, and the time counts.
    pub(crate) async fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<i64, tonic::Status> {
        let mut refusals = 0;
        loop {
            self.0
                .ready()
                .await
                .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
            let request = tonic::Request::new(PutRequest {
                key: key.clone(),
                value: value.clone(),
            });
            let answer: Result<tonic::Response<PutResponse>, _> = self
                .0
                .unary(
                    request,
                    PathAndQuery::from_static("/etcdserverpb.KV/Put"),
                    ProstCodec::default(),
                )
                .await;
            match answer {
                Ok(response) => return Ok(response.into_inner().header.map_or(0, |h| h.revision)),
                Err(status) if status.message().contains("too many requests") && refusals < 6000 => {
                    refusals += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                Err(status) => return Err(status),
            }
        }
    }

    /// `Watch/Watch` of every key starting with `prefix`, from the next
    /// revision on; returns once etcd confirmed the watch.
    pub(crate) async fn watch_prefix(
        &mut self,
        prefix: &[u8],
    ) -> Result<tonic::Streaming<WatchResponse>, tonic::Status> {
        self.0
            .ready()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let create = WatchRequest {
            create_request: Some(WatchCreateRequest {
                key: prefix.to_vec(),
                range_end: prefix_end(prefix),
                start_revision: 0,
            }),
        };
        // The request stream stays open: closing it would end the watch.
        let requests = tokio_stream::once(create).chain(tokio_stream::pending());
        let mut stream: tonic::Streaming<WatchResponse> = self
            .0
            .streaming(
                tonic::Request::new(requests),
                PathAndQuery::from_static("/etcdserverpb.Watch/Watch"),
                ProstCodec::default(),
            )
            .await?
            .into_inner();
        match stream.message().await? {
            Some(first) if first.created => Ok(stream),
            other => Err(tonic::Status::internal(format!("watch not created: {other:?}"))),
        }
    }
}

/// The end of the key range of every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A single-node etcd with its data in a scratch directory.
pub(crate) struct Etcd {
    /// The server process.
    pub(crate) proc: Proc,
    _data: Scratch,
    /// Its client address.
    pub(crate) addr: SocketAddr,
}

/// The etcd binary: on the PATH, or installed from Debian's etcd-server.
pub(crate) fn binary() -> Result<PathBuf, String> {
    if let Some(found) = procs::find_program("etcd", &[]) {
        return Ok(found);
    }
    let installed = std::process::Command::new("apt-get")
        .args(["install", "-y", "-qq", "etcd-server"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output();
    match installed {
        Ok(o) if o.status.success() => {
            procs::find_program("etcd", &[]).ok_or_else(|| "etcd-server installed but no etcd binary".to_owned())
        }
        Ok(o) => Err(format!(
            "etcd is not installed and `apt-get install etcd-server` failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("etcd is not installed and apt-get could not run: {e}")),
    }
}

impl Etcd {
    /// Starts `binary` with a fresh data directory on free loopback ports.
    pub(crate) async fn start(binary: &std::path::Path) -> anyhow::Result<Etcd> {
        let data = Scratch::new("etcd")?;
        let client = procs::free_port()?;
        let peer = procs::free_port()?;
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let args: Vec<String> = [
            "--name",
            "bench",
            "--data-dir",
            &data.path().join("data").to_string_lossy(),
            "--listen-client-urls",
            &client_url,
            "--advertise-client-urls",
            &client_url,
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
            "--initial-cluster",
            &format!("bench={peer_url}"),
            "--quota-backend-bytes",
            "8589934592",
            "--log-level",
            "error",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let proc = procs::spawn_quiet(binary, &args)?;
        let addr: SocketAddr = format!("127.0.0.1:{client}").parse()?;
        procs::wait_for_port(addr, Duration::from_secs(20)).await?;
        // Ready once a Put succeeds (the member has elected itself).
        let channel = Channel::from_shared(format!("http://{addr}"))?.connect().await?;
        let mut client = Client::new(channel);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            match client.put(b"/ready".to_vec(), b"1".to_vec()).await {
                Ok(_) => break,
                Err(_) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e).context("etcd never answered a Put"),
            }
        }
        Ok(Etcd {
            proc,
            _data: data,
            addr,
        })
    }
}
