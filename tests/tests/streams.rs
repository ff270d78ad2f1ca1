//! Open streams, from the attacker's side, over real gRPC on loopback:
//! the caps on subscriptions and log readers count per party and per
//! address, so the principals of one party cannot take every place, nor
//! one machine; and a log reader that never reads is ended after the stall
//! timeout, freeing its place.

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming, transport::Channel};
use tonic_types::StatusExt;
use truce_auth::{PrincipalsFile, Role};
use truce_proto::v1::{
    self, ingest_service_client::IngestServiceClient, log_service_client::LogServiceClient,
    query_service_client::QueryServiceClient, read_log_response::Kind as LogKind, subscribe_request::Start,
};
use truce_serve::{
    admission::{Caps, StreamLimits},
    auth::AuthMode,
};
use truce_tests::{PATIENCE, Pair, numbered_report, request, secure::with_token, stream};

/// A report of `n` as the caller's own party.
fn own_report(n: u32) -> v1::SubmitReportsRequest {
    let mut report = numbered_report(n);
    report.reporting_party.clear();
    v1::SubmitReportsRequest {
        request: Some(request(&format!("bulk-{n}"), report)),
    }
}

/// Services on tokens, on a fresh principals file.
struct Services {
    pair: Pair,
    file: PrincipalsFile,
    _dir: tempfile::TempDir,
}

impl Services {
    async fn start(streams: StreamLimits) -> Services {
        let dir = tempfile::tempdir().expect("test setup");
        let file = PrincipalsFile::new(dir.path().join("principals.json"));
        let pair = Pair::start_full(
            truce_ingest::IngestConfig {
                data_dir: dir.path().to_owned(),
                streams,
                ..Default::default()
            },
            truce_query::QuerySettings {
                caps: streams.caps,
                stall_timeout: streams.stall_timeout,
                ..Default::default()
            },
            AuthMode::Tokens(file.clone()),
        )
        .await;
        Services { pair, file, _dir: dir }
    }

    /// Adds a principal and returns its token.
    fn add(&self, name: &str, party: &str, role: Role) -> String {
        self.file
            .add(name, &party.parse().expect("party"), &[role])
            .expect("add a principal")
            .token
    }
}

/// A connection to `addr`, from `local` if given (another loopback address
/// is another caller address).
async fn channel(addr: SocketAddr, local: Option<IpAddr>) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .local_address(local)
        .connect()
        .await
        .expect("connect")
}

/// Opens a subscription as `token` over `channel`; the refusal, if any.
async fn subscribe(channel: &Channel, token: &str) -> Result<stream::Changes, Status> {
    let mut query = QueryServiceClient::new(channel.clone());
    let mut changes = query
        .subscribe(with_token(token, stream::request("", Start::FromNow(true))))
        .await?
        .into_inner();
    stream::next(&mut changes).await?;
    Ok(changes)
}

/// Opens a log reader as `token` over `channel`; the refusal, if any.
async fn read_log(channel: &Channel, token: &str) -> Result<Streaming<v1::ReadLogResponse>, Status> {
    let mut log = LogServiceClient::new(channel.clone());
    let mut entries = log
        .read_log(with_token(token, v1::ReadLogRequest::default()))
        .await?
        .into_inner();
    entries.message().await?;
    Ok(entries)
}

/// The cap a RESOURCE_EXHAUSTED refusal names.
fn cap(status: &Status, reason: &str) -> String {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let info = status.get_error_details().error_info().cloned().expect("error info");
    assert_eq!(info.reason, reason);
    info.metadata["cap"].clone()
}

#[tokio::test]
async fn the_principals_of_one_party_cannot_take_every_place_nor_one_address() {
    let caps = Caps {
        total: 20,
        per_party: 4,
        per_address: 6,
    };
    let s = Services::start(StreamLimits {
        caps,
        ..Default::default()
    })
    .await;
    let desks: Vec<String> = (1..=4)
        .map(|n| s.add(&format!("idf-desk-{n}"), "idf", Role::Reporter))
        .collect();
    let un = s.add("un-reader", "un", Role::Observer);
    let egypt = s.add("egypt-monitor", "egypt", Role::Monitor);
    let here = channel(s.pair.query, None).await;

    // Four principals of one party, two subscriptions each: the party's
    // four places, then refusals naming the party's cap.
    let mut held = Vec::new();
    let mut refused = Vec::new();
    for token in desks.iter().chain(&desks) {
        match subscribe(&here, token).await {
            Ok(changes) => held.push(changes),
            Err(status) => refused.push(cap(&status, "SUBSCRIPTION_LIMIT")),
        }
    }
    assert_eq!(held.len(), caps.per_party);
    assert_eq!(refused, ["party"; 4]);
    // Another party still subscribes, from the same address.
    for _ in 0..2 {
        held.push(subscribe(&here, &un).await.expect("another party subscribes"));
    }
    // The address now holds its six; a third party is refused there, and
    // subscribes from another address.
    let status = subscribe(&here, &egypt).await.expect_err("the address's cap");
    assert_eq!(cap(&status, "SUBSCRIPTION_LIMIT"), "address");
    let elsewhere = channel(s.pair.query, Some("127.0.0.2".parse().expect("address"))).await;
    held.push(subscribe(&elsewhere, &egypt).await.expect("from another address"));

    // Log readers on the ingest port are counted the same way, apart.
    let ingest = channel(s.pair.ingest, None).await;
    let mut readers = Vec::new();
    for token in &desks {
        readers.push(read_log(&ingest, token).await.expect("a log reader"));
    }
    let status = read_log(&ingest, &desks[0]).await.expect_err("the party's cap");
    assert_eq!(cap(&status, "LOG_READER_LIMIT"), "party");
    readers.push(read_log(&ingest, &un).await.expect("another party reads the log"));

    // Closing frees the places at once.
    held.clear();
    readers.clear();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for token in &desks {
        subscribe(&here, token)
            .await
            .expect("the party's places are free again");
    }
    s.pair.stop().await;
}

#[tokio::test]
async fn a_log_reader_that_never_reads_is_ended_after_the_stall_timeout_and_frees_its_place() {
    let stall = Duration::from_millis(500);
    let s = Services::start(StreamLimits {
        caps: Caps {
            total: 1,
            ..Caps::default()
        },
        stall_timeout: stall,
    })
    .await;
    let idf = s.add("idf-desk", "idf", Role::Reporter);
    let un = s.add("un-reader", "un", Role::Observer);
    // Far more than the queue and the HTTP/2 windows (2 MiB a stream for
    // this client) hold.
    let mut ingest: IngestServiceClient<Channel> = s.pair.ingest_client().await;
    let (requests, inbound) = mpsc::channel(64);
    let submitting = tokio::spawn(async move {
        for n in 0..2000 {
            let mut request = own_report(n);
            if let Some(r) = request.request.as_mut().and_then(|r| r.report.as_mut()) {
                r.summary = "x".repeat(4000);
            }
            requests.send(request).await.expect("send");
        }
    });
    let mut results = ingest
        .submit_reports(with_token(&idf, ReceiverStream::new(inbound)))
        .await
        .expect("bulk")
        .into_inner();
    let mut head = 0;
    while let Some(result) = results.message().await.expect("bulk results") {
        match result.result.expect("a result") {
            v1::submit_reports_response::Result::Accepted(a) => head = a.position,
            v1::submit_reports_response::Result::Rejected(r) => panic!("rejected: {r:?}"),
        }
    }
    submitting.await.expect("submitted");

    let ingest_channel = channel(s.pair.ingest, None).await;
    let opened = Instant::now();
    let mut stalled = read_log(&ingest_channel, &un).await.expect("the only place");
    let status = read_log(&ingest_channel, &un)
        .await
        .expect_err("the service's one place is taken");
    assert_eq!(cap(&status, "LOG_READER_LIMIT"), "total");
    // Nobody reads the first: once it has stalled its place is free.
    let other = channel(s.pair.ingest, None).await;
    let next = loop {
        match read_log(&other, &un).await {
            Ok(entries) => break entries,
            Err(status) => {
                assert_eq!(cap(&status, "LOG_READER_LIMIT"), "total");
                assert!(opened.elapsed() < PATIENCE, "the stalled reader keeps its place");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert!(opened.elapsed() >= stall, "freed after {:?}", opened.elapsed());
    // It does not read either: gone before it stalls too.
    drop(next);

    // The stalled reader gets what was queued, then the end, saying where
    // to read on from.
    let mut last = 0;
    let status = tokio::time::timeout(PATIENCE, async {
        loop {
            match stalled.message().await {
                Ok(Some(v1::ReadLogResponse {
                    kind: Some(LogKind::Entry(entry)),
                })) => last = entry.position,
                Ok(Some(_)) => {}
                Ok(None) => panic!("ended without a status"),
                Err(status) => break status,
            }
        }
    })
    .await
    .expect("the stalled reader was not ended");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let info = status.get_error_details().error_info().cloned().expect("error info");
    assert_eq!(info.reason, "SLOW_CONSUMER");
    assert_eq!(info.metadata["position"], last.to_string(), "where delivery stopped");
    assert!(last < head, "the reader stalled before the end ({last} of {head})");
    s.pair.stop().await;
}
