//! Durability: restarts, kill -9 during a burst, and a query service that
//! restarts and catches up.

use std::{
    net::SocketAddr,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio_stream::StreamExt;
use truce_proto::v1::{self, read_log_response::Kind as LogKind, subscribe_request::Start, subscribe_response::Kind};
use truce_tests::{
    PATIENCE, Pair, Process, ingest_client, numbered_report, query_client, request, start_ingest, start_query,
};

async fn list_all(
    query: &mut v1::query_service_client::QueryServiceClient<tonic::transport::Channel>,
    min_position: u64,
) -> Vec<v1::IncidentSummary> {
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = query
            .list_incidents(v1::ListIncidentsRequest {
                page_size: 100,
                page_token,
                min_position,
                ..Default::default()
            })
            .await
            .expect("list incidents")
            .into_inner();
        all.extend(page.incidents);
        if page.next_page_token.is_empty() {
            return all;
        }
        page_token = page.next_page_token;
    }
}

#[tokio::test]
async fn a_restarted_pair_keeps_every_report_and_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let pair = Pair::start(dir.path()).await;
    let mut ingest = pair.ingest_client().await;
    for n in 0..120 {
        ingest
            .submit_report(request(&format!("k{n}"), numbered_report(n)))
            .await
            .unwrap();
    }
    pair.stop().await;

    let pair = Pair::start(dir.path()).await;
    let mut ingest = pair.ingest_client().await;
    let mut query = pair.query_client().await;
    let listed = list_all(&mut query, 120).await;
    assert_eq!(listed.len(), 120);
    assert_eq!(
        listed.iter().map(|i| i.updated_position).collect::<Vec<_>>(),
        (1..=120).collect::<Vec<_>>()
    );
    let retry = ingest
        .submit_report(request("k5", numbered_report(5)))
        .await
        .unwrap()
        .into_inner();
    assert!(retry.replayed);
    assert_eq!(retry.report_id, "rpt-6");
    let next = ingest
        .submit_report(request("k120", numbered_report(120)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.position, 121);
    pair.stop().await;
}

/// In `truce up` a report is acknowledged only once the query service's
/// view holds it: a client reading right after its write finds it without
/// naming a position to wait for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_report_is_already_in_the_view_of_the_same_process() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let pair = Pair::start(dir.path()).await;
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..4u32 {
        let mut ingest = pair.ingest_client().await;
        let mut query = pair.query_client().await;
        writers.spawn(async move {
            for n in (writer * 100)..(writer * 100 + 100) {
                let accepted = ingest
                    .submit_report(request(&format!("w{n}"), numbered_report(n)))
                    .await
                    .expect("submit")
                    .into_inner();
                let found = query
                    .get_report(v1::GetReportRequest {
                        report_id: accepted.report_id.clone(),
                        min_position: 0,
                    })
                    .await
                    .unwrap_or_else(|status| panic!("{} acknowledged but not found: {status}", accepted.report_id))
                    .into_inner();
                assert!(found.position >= accepted.position);
                assert_eq!(found.report.expect("the report").report_id, accepted.report_id);
            }
        });
    }
    while let Some(writer) = writers.join_next().await {
        writer.expect("every acknowledged report was found");
    }
    pair.stop().await;
}

/// A `truce up` process of its own, so it can be killed.
struct UpProcess {
    child: tokio::process::Child,
    ingest: SocketAddr,
    query: SocketAddr,
}

async fn spawn_up(dir: &Path) -> UpProcess {
    let args = [
        "up",
        "--insecure-loopback",
        "--ingest-listen",
        "127.0.0.1:0",
        "--query-listen",
        "127.0.0.1:0",
        "--data-dir",
    ];
    let mut args: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
    args.push(dir.into());
    let process = Process::spawn(env!("CARGO_BIN_EXE_truce-testbed"), &args, &["ingest", "query"]).await;
    UpProcess {
        ingest: process.addr("ingest"),
        query: process.addr("query"),
        child: process.child,
    }
}

#[tokio::test]
async fn kill_9_during_a_burst_loses_no_acknowledged_report() {
    let dir = tempfile::tempdir().unwrap();
    let mut process = spawn_up(dir.path()).await;
    let acknowledged: Arc<Mutex<Vec<(String, String, v1::Report)>>> = Arc::default();
    let mut submitters = Vec::new();
    for task in 0..16u32 {
        let mut client = ingest_client(process.ingest).await;
        let acknowledged = Arc::clone(&acknowledged);
        submitters.push(tokio::spawn(async move {
            for n in 0.. {
                let key = format!("burst-{task}-{n}");
                let report = numbered_report(task * 100_000 + n);
                match client.submit_report(request(&key, report.clone())).await {
                    Ok(response) => acknowledged
                        .lock()
                        .unwrap()
                        .push((key, response.into_inner().report_id, report)),
                    Err(_) => return, // the server is gone
                }
            }
        }));
    }
    // Let the burst build up, then kill -9 mid-flight.
    tokio::time::timeout(PATIENCE, async {
        while acknowledged.lock().unwrap().len() < 300 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("too few reports acknowledged before the kill");
    process.child.start_kill().unwrap();
    process.child.wait().await.unwrap();
    for submitter in submitters {
        tokio::time::timeout(PATIENCE, submitter).await.unwrap().unwrap();
    }
    let acknowledged = std::mem::take(&mut *acknowledged.lock().unwrap());

    let process = spawn_up(dir.path()).await;
    let mut ingest = ingest_client(process.ingest).await;
    let mut query = query_client(process.query).await;
    let mut log = v1::log_service_client::LogServiceClient::new(
        tonic::transport::Channel::from_shared(format!("http://{}", process.ingest))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    // The log is whole: gapless positions, every hash link intact.
    let mut entries = log
        .read_log(v1::ReadLogRequest {
            from_position: 1,
            incarnation: String::new(),
            until_position: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let Some(LogKind::Info(info)) = entries.next().await.unwrap().unwrap().kind else {
        panic!("no log info");
    };
    let head = info.head_position;
    assert!(
        head >= acknowledged.len() as u64,
        "head {head} < {} acknowledged",
        acknowledged.len()
    );
    let mut previous = truce_log::GENESIS_HASH;
    let mut position = 0;
    while position < head {
        let Some(LogKind::Entry(entry)) = entries.next().await.unwrap().unwrap().kind else {
            continue;
        };
        position += 1;
        assert_eq!(entry.position, position);
        let hash = truce_log::chain_hash(&previous, &entry.event);
        assert_eq!(entry.hash, hash.to_vec(), "broken link at {position}");
        previous = hash;
    }
    // Every acknowledged report is there, exactly as submitted, and its
    // key still answers with the same report.
    for (key, report_id, report) in &acknowledged {
        let stored = query
            .get_report(v1::GetReportRequest {
                report_id: report_id.clone(),
                min_position: head,
            })
            .await
            .unwrap()
            .into_inner()
            .report
            .unwrap();
        assert_eq!(stored.report.as_ref(), Some(report), "{report_id}");
        assert_eq!(&stored.client_report_id, key);
    }
    for (key, report_id, report) in acknowledged.iter().step_by(25) {
        let retry = ingest
            .submit_report(request(key, report.clone()))
            .await
            .unwrap()
            .into_inner();
        assert!(retry.replayed && &retry.report_id == report_id, "{key}");
    }
    eprintln!(
        "{} reports acknowledged before kill -9, all recovered; log head {head}",
        acknowledged.len()
    );
}

#[tokio::test]
async fn a_restarted_query_service_catches_up_from_its_replica_and_the_upstream() {
    let ingest_dir = tempfile::tempdir().unwrap();
    let query_dir = tempfile::tempdir().unwrap();
    let ingest_server = start_ingest(ingest_dir.path()).await;
    let mut ingest = ingest_client(ingest_server.addr).await;
    for n in 0..50 {
        ingest.submit_report(request("", numbered_report(n))).await.unwrap();
    }
    let query_server = start_query(ingest_server.addr, query_dir.path()).await;
    let mut query = query_client(query_server.addr).await;
    assert_eq!(list_all(&mut query, 50).await.len(), 50);
    query_server.stop().await;

    for n in 50..100 {
        ingest.submit_report(request("", numbered_report(n))).await.unwrap();
    }
    let query_server = start_query(ingest_server.addr, query_dir.path()).await;
    let mut query = query_client(query_server.addr).await;
    assert_eq!(list_all(&mut query, 100).await.len(), 100);

    // A subscriber from the beginning sees every change once, in order,
    // then live ones.
    let mut stream = query
        .subscribe(v1::SubscribeRequest {
            start: Some(Start::FromBeginning(true)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    ingest.submit_report(request("", numbered_report(100))).await.unwrap();
    let mut positions = Vec::new();
    while positions.len() < 101 {
        let message = tokio::time::timeout(PATIENCE, stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Some(Kind::Change(change)) = message.kind {
            positions.push(change.position);
        }
    }
    assert_eq!(positions, (1..=101).collect::<Vec<_>>());
    drop(stream);
    query_server.stop().await;
    ingest_server.stop().await;
}

#[tokio::test]
async fn sigterm_ends_streams_cleanly_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let mut process = spawn_up(dir.path()).await;
    let mut ingest = ingest_client(process.ingest).await;
    let mut query = query_client(process.query).await;
    let mut stream = query
        .subscribe(v1::SubscribeRequest::default())
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(PATIENCE, stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(first.kind, Some(Kind::Subscribed(_))));
    ingest.submit_report(request("", numbered_report(1))).await.unwrap();

    let pid = process.child.id().expect("running").to_string();
    let signalled = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(signalled.success());
    // The stream delivers what it had, then ends with a retryable status.
    let status = tokio::time::timeout(PATIENCE, async {
        loop {
            match stream.next().await {
                Some(Ok(_)) => continue,
                Some(Err(status)) => return Some(status),
                None => return None,
            }
        }
    })
    .await
    .expect("stream did not end after SIGTERM");
    if let Some(status) = status {
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    }
    let exit = tokio::time::timeout(PATIENCE, process.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    // What was acknowledged before the signal is there after a restart.
    let process = spawn_up(dir.path()).await;
    let mut query = query_client(process.query).await;
    assert_eq!(list_all(&mut query, 1).await.len(), 1);
}

/// The in-process follower takes each durable batch's events straight from
/// the sequencer; while it cannot keep up, batches beyond its queue are
/// dropped, and it must read those from the log: every change still reaches
/// live subscribers exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Holding the view is the point: it keeps the follower from applying.
#[allow(clippy::await_holding_lock)]
async fn a_local_follower_that_falls_behind_reads_the_batches_it_missed_from_the_log() {
    use truce_ingest::sequencer::{self, COMMITTED_QUEUE, Submission};
    use truce_proto::convert::{Received, report_digest, report_from_wire};

    let dir = tempfile::tempdir().expect("temporary directory");
    let store = truce_log::LogStore::open(dir.path()).expect("open the log");
    let (head_tx, head_rx) = tokio::sync::watch::channel(store.head());
    let reader = truce_log::LogReader::new(store.path(), store.incarnation().clone(), head_rx);
    let (committed_tx, committed) = tokio::sync::mpsc::channel(COMMITTED_QUEUE);
    let (submitter, _sequencer) =
        sequencer::start(Box::new(store), Default::default(), head_tx, Some(committed_tx)).expect("start");
    let (_stop, stopping) = truce_serve::Stopping::new();
    let mut head = reader.watch_head();
    let state = truce_query::follow_local(reader, committed, stopping)
        .await
        .expect("follow the log");
    let mut live = state.live.subscribe();

    // One report per batch, three queues' worth, while the view is held.
    // The writers of batches the follower holds are answered once it has
    // applied them, so the reports are submitted without waiting for the
    // answers; each waits for the head to pass the one before, which keeps
    // them in separate batches.
    let total = 3 * COMMITTED_QUEUE as u32;
    let mut answers = tokio::task::JoinSet::new();
    let answered = Arc::new(AtomicUsize::new(0));
    {
        let _held = state.read_view();
        for n in 0..total {
            let wire = numbered_report(n);
            let submission = Submission {
                client_report_id: None,
                report: report_from_wire(&wire, "report", Received::Stored).expect("a valid report"),
                digest: report_digest(&wire),
                received_at: truce_domain::Timestamp(0),
                signature: None,
            };
            let (submitter, answered) = (submitter.clone(), Arc::clone(&answered));
            answers.spawn(async move {
                let answer = submitter.submit(submission).await;
                answered.fetch_add(1, Ordering::SeqCst);
                answer
            });
            head.wait_for(|head| head.position > u64::from(n))
                .await
                .expect("the head moves");
        }
        // The follower holds one batch and its queue as many more; the
        // writers of every other batch were answered without it.
        let unheld = total as usize - COMMITTED_QUEUE - 1;
        tokio::time::timeout(PATIENCE, async {
            while answered.load(Ordering::SeqCst) < unheld {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{} of {unheld} answered while the follower was held",
                answered.load(Ordering::SeqCst)
            )
        });
    }
    while let Some(answer) = answers.join_next().await {
        answer.expect("the submitter task").expect("submit");
    }

    let mut seen = Vec::new();
    while seen.len() < total as usize {
        let change = tokio::time::timeout(PATIENCE, live.recv())
            .await
            .expect("every change arrives")
            .expect("no change is lost to lag");
        seen.push(change.event.position.0);
    }
    assert_eq!(seen, (1..=u64::from(total)).collect::<Vec<_>>());
    assert_eq!(state.read_view().position().0, u64::from(total));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), live.recv())
            .await
            .is_err(),
        "nothing is applied twice"
    );
}
