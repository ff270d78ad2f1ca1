//! Open streams, from the attacker's side, over real gRPC on loopback:
//! a principal revoked, or a token rotated out, loses every stream it
//! holds (the bulk stream at its next report, storing nothing more;
//! `ReadLog` and `Subscribe` within the reload poll); the caps on
//! subscriptions, log readers and bulk streams count per party and per
//! address, so the
//! principals of one party cannot take every place, nor one machine; and a
//! log reader that never reads is ended after the stall timeout, freeing
//! its place.

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
    auth::RELOAD_POLL,
};
use truce_tests::{PATIENCE, Pair, numbered_report, request, secure::with_token, stream};

/// Services on tokens, on a fresh principals file.
struct Services {
    pair: Pair,
    file: PrincipalsFile,
    admin: String,
    _dir: tempfile::TempDir,
}

impl Services {
    async fn start(streams: StreamLimits) -> Services {
        let dir = tempfile::tempdir().expect("test setup");
        let (pair, file, admin) = truce_tests::secure::on_tokens(
            dir.path(),
            truce_ingest::IngestConfig {
                streams,
                ..Default::default()
            },
            truce_query::QuerySettings {
                caps: streams.caps,
                stall_timeout: streams.stall_timeout,
                ..Default::default()
            },
        )
        .await;
        Services {
            pair,
            file,
            admin,
            _dir: dir,
        }
    }

    /// Adds a principal and returns its token.
    fn add(&self, name: &str, party: &str, role: Role) -> String {
        self.file
            .add(name, &party.parse().expect("party"), &[role])
            .expect("add a principal")
            .token
    }

    /// A read as `token`.
    async fn list(&self, token: &str) -> Result<Vec<v1::IncidentSummary>, Status> {
        let mut query = self.pair.query_client().await;
        query
            .list_incidents(with_token(token, v1::ListIncidentsRequest::default()))
            .await
            .map(|r| r.into_inner().incidents)
    }

    /// Waits until the services refuse `token`: they have taken the change
    /// to the principals file in.
    async fn until_refused(&self, token: &str) {
        let since = Instant::now();
        while self.list(token).await.is_ok() {
            assert!(since.elapsed() < PATIENCE, "the token is still accepted");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn log_client(&self) -> LogServiceClient<Channel> {
        LogServiceClient::new(channel(self.pair.ingest, None).await)
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

/// The status a stream ends with, reading past its messages.
async fn end_of<T>(stream: &mut Streaming<T>) -> Status {
    let end = async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => {}
                Ok(None) => panic!("the stream ended without an error"),
                Err(status) => return status,
            }
        }
    };
    tokio::time::timeout(PATIENCE, end).await.expect("the stream went on")
}

/// A report of `n` as the caller's own party.
fn own_report(n: u32) -> v1::SubmitReportsRequest {
    let mut report = numbered_report(n);
    report.reporting_party.clear();
    v1::SubmitReportsRequest {
        request: Some(request(&format!("bulk-{n}"), report)),
    }
}

/// How the credential of a stream is taken away.
#[derive(Debug, Clone, Copy)]
enum Change {
    Revoke,
    Rotate,
}

impl Change {
    fn apply(self, file: &PrincipalsFile, name: &str) {
        match self {
            Change::Revoke => file.revoke(name).expect("revoke"),
            Change::Rotate => drop(file.rotate(name).expect("rotate")),
        }
    }
}

/// A bulk stream whose principal loses its credential: its next report
/// is answered UNAUTHENTICATED, and what it sends then is not stored.
async fn bulk_stream_loses_its_credential(change: Change) {
    let s = Services::start(StreamLimits::default()).await;
    let idf = s.add("idf-desk", "idf", Role::Reporter);
    let egypt = s.add("egypt-desk", "egypt", Role::Reporter);
    let mut ingest = s.pair.ingest_client().await;
    let (requests, inbound) = mpsc::channel(16);
    let mut results = ingest
        .submit_reports(with_token(&idf, ReceiverStream::new(inbound)))
        .await
        .expect("the bulk stream opens")
        .into_inner();
    requests.send(own_report(1)).await.expect("send");
    let first = tokio::time::timeout(PATIENCE, results.message())
        .await
        .expect("an answer")
        .expect("the stream goes on")
        .expect("a result");
    let Some(v1::submit_reports_response::Result::Accepted(accepted)) = first.result else {
        panic!("the first report is accepted: {first:?}");
    };

    change.apply(&s.file, "idf-desk");
    s.until_refused(&idf).await;
    // The attacker holds the stream open and goes on sending.
    let _ = requests.send(own_report(2)).await;
    let _ = requests.send(own_report(3)).await;
    let status = end_of(&mut results).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    // Through the query service: of the idf reports only the first is
    // stored, even once a later write is in the view.
    let mut other = s.pair.ingest_client().await;
    let mut report = numbered_report(4);
    report.reporting_party.clear();
    let later = other
        .submit_report(with_token(&egypt, request("", report)))
        .await
        .expect("another party writes")
        .into_inner();
    let mut query = s.pair.query_client().await;
    let listed = query
        .list_incidents(with_token(
            &s.admin,
            v1::ListIncidentsRequest {
                min_position: later.position,
                ..Default::default()
            },
        ))
        .await
        .expect("list")
        .into_inner();
    let reporters: Vec<(String, Vec<String>)> = listed
        .incidents
        .iter()
        .map(|i| (i.incident_id.clone(), i.reporters.clone()))
        .collect();
    assert_eq!(
        reporters,
        [
            (accepted.incident_id.clone(), vec!["idf".to_owned()]),
            (later.incident_id.clone(), vec!["egypt".to_owned()])
        ],
        "nothing the stream sent after the change is stored"
    );
    s.pair.stop().await;
}

#[tokio::test]
async fn a_bulk_stream_of_a_revoked_principal_is_refused_at_its_next_report_and_stores_nothing_more() {
    bulk_stream_loses_its_credential(Change::Revoke).await;
}

#[tokio::test]
async fn a_bulk_stream_opened_with_a_rotated_out_token_is_refused_at_its_next_report_and_stores_nothing_more() {
    bulk_stream_loses_its_credential(Change::Rotate).await;
}

/// `ReadLog` and `Subscribe` of a principal that loses its credential end
/// UNAUTHENTICATED within the reload poll (and some slack for a busy
/// machine), even while nothing is written.
async fn read_streams_lose_their_credential(change: Change) {
    let s = Services::start(StreamLimits::default()).await;
    let un = s.add("un-reader", "un", Role::Observer);
    let mut log = s.log_client().await;
    let mut entries = log
        .read_log(with_token(&un, v1::ReadLogRequest::default()))
        .await
        .expect("read the log")
        .into_inner();
    let first = entries.message().await.expect("a message").expect("the stream goes on");
    assert!(matches!(first.kind, Some(LogKind::Info(_))), "{first:?}");
    let mut query = s.pair.query_client().await;
    let mut changes = query
        .subscribe(with_token(&un, stream::request("", Start::FromNow(true))))
        .await
        .expect("subscribe")
        .into_inner();
    stream::next(&mut changes).await.expect("subscribed");

    let changed = Instant::now();
    change.apply(&s.file, "un-reader");
    let (log_end, subscription_end) = tokio::join!(
        async {
            let status = end_of(&mut entries).await;
            (status, changed.elapsed())
        },
        async {
            let status = end_of(&mut changes).await;
            (status, changed.elapsed())
        }
    );
    eprintln!(
        "after the change ({change:?}), ReadLog ended in {:?}, Subscribe in {:?}",
        log_end.1, subscription_end.1
    );
    for (what, (status, took)) in [("ReadLog", log_end), ("Subscribe", subscription_end)] {
        assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
        assert!(
            took < RELOAD_POLL + Duration::from_secs(1),
            "{what} ended {took:?} after the change"
        );
    }
    s.pair.stop().await;
}

#[tokio::test]
async fn read_log_and_subscribe_of_a_revoked_principal_end_within_the_reload_poll() {
    read_streams_lose_their_credential(Change::Revoke).await;
}

#[tokio::test]
async fn read_log_and_subscribe_opened_with_a_rotated_out_token_end_within_the_reload_poll() {
    read_streams_lose_their_credential(Change::Rotate).await;
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

/// A bulk submission stream of `token`'s, held open with nothing sent.
type Bulk = (
    mpsc::Sender<v1::SubmitReportsRequest>,
    Streaming<v1::SubmitReportsResponse>,
);

async fn open_bulk(channel: &Channel, token: &str) -> Result<Bulk, Status> {
    let (requests, inbound) = mpsc::channel(1);
    let results = IngestServiceClient::new(channel.clone())
        .submit_reports(with_token(token, ReceiverStream::new(inbound)))
        .await?
        .into_inner();
    Ok((requests, results))
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

    // So are bulk submission streams, apart again.
    let hamas = s.add("hamas-desk", "hamas", Role::Reporter);
    let mut bulk = Vec::new();
    for token in &desks {
        bulk.push(open_bulk(&ingest, token).await.expect("a bulk stream"));
    }
    let status = open_bulk(&ingest, &desks[0]).await.expect_err("the party's cap");
    assert_eq!(cap(&status, "BULK_STREAM_LIMIT"), "party");
    bulk.push(open_bulk(&ingest, &hamas).await.expect("another party opens one"));
    // Ending a stream frees its place.
    drop(bulk.remove(0));
    let deadline = Instant::now() + PATIENCE;
    while open_bulk(&ingest, &desks[0]).await.is_err() {
        assert!(Instant::now() < deadline, "the place was not freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Open bulk streams end at shutdown: the pair stops with these open
    // (the stop below is bounded by PATIENCE).

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

/// On a quiet log a stalled reader is found out by what waits in its
/// queue, not once heartbeats have filled it (64 of them, two seconds
/// apart).
#[tokio::test]
async fn a_log_reader_that_stops_reading_a_quiet_log_is_ended_after_the_stall_timeout() {
    let stall = Duration::from_millis(500);
    let s = Services::start(StreamLimits {
        stall_timeout: stall,
        ..Default::default()
    })
    .await;
    let idf = s.add("idf-desk", "idf", Role::Reporter);
    let un = s.add("un-reader", "un", Role::Observer);
    let mut ingest = s.pair.ingest_client().await;
    for n in 0..40 {
        let mut report = numbered_report(n);
        report.reporting_party.clear();
        report.summary = "x".repeat(3000);
        ingest
            .submit_report(with_token(&idf, request(&format!("quiet-{n}"), report)))
            .await
            .expect("submitted");
    }
    // A client whose HTTP/2 window takes a few entries, and that then reads
    // nothing while the log stays quiet.
    let small_window = tonic::transport::Endpoint::from_shared(format!("http://{}", s.pair.ingest))
        .expect("endpoint")
        .initial_stream_window_size(8 * 1024)
        .initial_connection_window_size(8 * 1024)
        .connect()
        .await
        .expect("connect");
    let opened = Instant::now();
    let mut stalled = read_log(&small_window, &un).await.expect("a log reader");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let status = tokio::time::timeout(PATIENCE, async {
        loop {
            match stalled.message().await {
                Ok(Some(_)) => {}
                Ok(None) => panic!("ended without a status"),
                Err(status) => break status,
            }
        }
    })
    .await
    .expect("the stalled reader was not ended");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        opened.elapsed() < Duration::from_secs(15),
        "ended after {:?}, not about the stall timeout",
        opened.elapsed()
    );
    s.pair.stop().await;
}
