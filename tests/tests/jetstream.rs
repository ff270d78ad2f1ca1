//! The log on NATS JetStream, against real servers: several ingest and
//! query replicas at once, a 3-node cluster losing a node mid-burst, and
//! NATS stopping and starting again.
//!
//! The shared server is `TRUCE_TEST_NATS`, which `tests/run` starts; the
//! cluster and the restarted server are `nats-server` processes this test
//! starts on free loopback ports and ends itself.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio_stream::StreamExt;
use tonic::Code;
use truce_ingest::{IngestConfig, LogLocation};
use truce_jetstream::JetStreamSettings;
use truce_proto::v1::{self, subscribe_request::Start, subscribe_response::Kind};
use truce_query::{QuerySettings, Source, Upstream};
use truce_tests::{
    PATIENCE, Running, crossing_report, ingest_client,
    nats::{Cluster, NatsServer, free_ports, verify_through},
    numbered_report, query_client, request, start_ingest_with, start_query_on, test_log,
};

fn shared_nats() -> String {
    std::env::var("TRUCE_TEST_NATS")
        .expect("TRUCE_TEST_NATS names no NATS server: run the tests with tests/run, which starts one")
}

async fn ingest_on(settings: &JetStreamSettings, dir: &Path) -> Running {
    start_ingest_with(IngestConfig {
        data_dir: dir.to_owned(),
        log: LogLocation::JetStream(settings.clone()),
        ..IngestConfig::default()
    })
    .await
}

async fn query_on(settings: &JetStreamSettings, dir: &Path, query: QuerySettings) -> Running {
    start_query_on(
        Upstream {
            source: Source::JetStream(settings.clone()),
            replica_dir: dir.to_owned(),
        },
        query,
    )
    .await
}

/// Every change of an unfiltered subscription from the beginning through
/// `last`, as (position, kind, report id).
async fn changes_through(addr: std::net::SocketAddr, last: u64) -> Vec<(u64, i32, String)> {
    let mut query = query_client(addr).await;
    let mut stream = query
        .subscribe(v1::SubscribeRequest {
            start: Some(Start::FromBeginning(true)),
            ..Default::default()
        })
        .await
        .expect("subscribe")
        .into_inner();
    let mut seen = Vec::new();
    while seen.last().is_none_or(|(p, _, _)| *p < last) {
        let message = tokio::time::timeout(PATIENCE, stream.next())
            .await
            .expect("changes stalled")
            .expect("stream ended")
            .expect("stream failed");
        if let Some(Kind::Change(change)) = message.kind {
            seen.push((change.position, change.kind, change.report_id));
        }
    }
    seen
}

/// `truce verify` through the ingest service's LogService.
async fn truce_verify(ingest: std::net::SocketAddr) -> String {
    verify_through(env!("CARGO_BIN_EXE_truce-testbed"), ingest).await
}

/// Two ingest replicas take reports at once, some of them the same keyed
/// report sent to both, some about one event; two query replicas follow.
/// Every subscriber sees the same gapless order, duplicates are stored
/// once, the event is one incident, and the chain verifies.
#[tokio::test]
async fn two_ingest_and_two_query_replicas_agree_on_one_order() {
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().expect("dir")).collect();
    let settings = test_log::stream_for(&shared_nats(), dirs[0].path()).await;
    let ingest = [
        ingest_on(&settings, dirs[0].path()).await,
        ingest_on(&settings, dirs[1].path()).await,
    ];
    let query = [
        query_on(&settings, dirs[2].path(), QuerySettings::default()).await,
        query_on(&settings, dirs[3].path(), QuerySettings::default()).await,
    ];

    let accepted: Arc<Mutex<Vec<(String, v1::SubmitReportResponse)>>> = Arc::default();
    let mut submitters = Vec::new();
    for task in 0..4u32 {
        let addr = ingest[task as usize % 2].addr;
        let accepted = Arc::clone(&accepted);
        submitters.push(tokio::spawn(async move {
            let mut client = ingest_client(addr).await;
            for i in 0..40u32 {
                let (key, report) = match i % 4 {
                    // Distinct events.
                    0 | 1 => (format!("t{task}-{i}"), numbered_report(1000 + task * 100 + i)),
                    // The same keyed report, from both replicas.
                    2 => (format!("shared-{i}"), numbered_report(5000 + i)),
                    // One event, reported many times.
                    _ => (String::new(), crossing_report()),
                };
                let response = client
                    .submit_report(request(&key, report))
                    .await
                    .expect("accepted")
                    .into_inner();
                accepted.lock().expect("lock").push((key, response));
            }
        }));
    }
    for submitter in submitters {
        submitter.await.expect("submitter");
    }
    let accepted = std::mem::take(&mut *accepted.lock().expect("lock"));
    assert_eq!(accepted.len(), 160);

    // Keys: one report per key, whichever replica answered.
    let mut by_key: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (key, response) in accepted.iter().filter(|(key, _)| !key.is_empty()) {
        by_key
            .entry(key.clone())
            .or_default()
            .insert(response.report_id.clone());
    }
    assert!(
        by_key.values().all(|ids| ids.len() == 1),
        "a key stored twice: {by_key:?}"
    );
    let stored: BTreeSet<&str> = accepted.iter().map(|(_, r)| r.report_id.as_str()).collect();
    // 4 tasks x 20 distinct + 10 shared keys + 4 x 10 unkeyed reports.
    assert_eq!(stored.len(), 80 + 10 + 40);
    let last = accepted.iter().map(|(_, r)| r.position).max().expect("some");
    assert_eq!(last, 130, "positions are gapless: one per stored report");

    // One event, one incident, though reported through both replicas.
    let event_incidents: BTreeSet<&str> = accepted
        .iter()
        .filter(|(key, _)| key.is_empty())
        .map(|(_, r)| r.incident_id.as_str())
        .collect();
    assert_eq!(event_incidents.len(), 1, "{event_incidents:?}");

    // Both query replicas deliver the same order, every position once.
    let first = changes_through(query[0].addr, last).await;
    let second = changes_through(query[1].addr, last).await;
    assert_eq!(first, second);
    let positions: Vec<u64> = first.iter().map(|(p, _, _)| *p).collect();
    assert_eq!(positions, (1..=last).collect::<Vec<_>>());

    // The chain verifies through either ingest replica's LogService.
    for replica in &ingest {
        let verified = truce_verify(replica.addr).await;
        assert!(verified.contains(&format!("verified {last} entries")), "{verified}");
    }
    for running in ingest.into_iter().chain(query) {
        running.stop().await;
    }
}

/// Writes the configuration of one server on `port` (with JetStream
/// storing in `dir`, or without JetStream), and returns its path.
fn single_server_config(dir: &Path, port: u16, jetstream: bool) -> std::path::PathBuf {
    let mut text = format!("listen: 127.0.0.1:{port}\n");
    let mut name = "plain.conf";
    if jetstream {
        text += &format!("jetstream {{ store_dir: \"{}\" }}\n", dir.join("store").display());
        name = "jetstream.conf";
    }
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write the nats-server configuration");
    path
}

/// Submits `report` with `key` until it is acknowledged (retrying
/// UNAVAILABLE, as a client should, with the same key).
async fn submit_until_acknowledged(
    client: &mut v1::ingest_service_client::IngestServiceClient<tonic::transport::Channel>,
    key: &str,
    report: v1::Report,
) -> v1::SubmitReportResponse {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match client.submit_report(request(key, report.clone())).await {
            Ok(response) => return response.into_inner(),
            Err(status) if status.code() == Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(status) => panic!("{key}: {status:?}"),
        }
    }
}

/// A 3-node cluster with the stream on all three; one node killed mid-burst.
/// No acknowledged report is lost, none is stored twice, ingest goes on.
#[tokio::test]
async fn a_cluster_losing_a_node_mid_burst_loses_no_acknowledged_report() {
    let dir = tempfile::tempdir().expect("dir");
    let mut cluster = Cluster::start(dir.path()).await;
    let settings = cluster.stream().await;
    let ingest_dir = tempfile::tempdir().expect("dir");
    let ingest = ingest_on(&settings, ingest_dir.path()).await;

    let acknowledged: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let mut submitters = Vec::new();
    for task in 0..6u32 {
        let acknowledged = Arc::clone(&acknowledged);
        let addr = ingest.addr;
        submitters.push(tokio::spawn(async move {
            let mut client = ingest_client(addr).await;
            for i in 0..50u32 {
                let key = format!("burst-{task}-{i}");
                let response = submit_until_acknowledged(&mut client, &key, numbered_report(task * 1000 + i)).await;
                acknowledged.lock().expect("lock").push((key, response.report_id));
            }
        }));
    }
    // Mid-burst, one node dies.
    while acknowledged.lock().expect("lock").len() < 100 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cluster.nodes[1].kill().await;
    let at_kill = acknowledged.lock().expect("lock").len();
    for submitter in submitters {
        submitter.await.expect("submitter");
    }
    let acknowledged = std::mem::take(&mut *acknowledged.lock().expect("lock"));
    assert_eq!(acknowledged.len(), 300);
    assert!(at_kill < 300, "the node died after the burst");

    // Everything acknowledged is in the log, once, and the chain holds.
    let ids: BTreeSet<&str> = acknowledged.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(ids.len(), 300, "a report was stored twice or answered wrongly");
    let verified = truce_verify(ingest.addr).await;
    assert!(verified.contains("verified 300 entries"), "{verified}");
    let query_dir = tempfile::tempdir().expect("dir");
    let query = query_on(&settings, query_dir.path(), QuerySettings::default()).await;
    let mut client = query_client(query.addr).await;
    // A new replica reads the stream once the cluster serves readers again.
    let deadline = Instant::now() + Duration::from_secs(60);
    for (_, id) in &acknowledged {
        loop {
            let request = v1::GetReportRequest {
                report_id: id.clone(),
                min_position: 300,
            };
            match client.get_report(request).await {
                Ok(_) => break,
                Err(status) if status.code() == Code::Unavailable && Instant::now() < deadline => {}
                Err(status) => panic!("{id} is not there: {status:?}"),
            }
        }
    }
    query.stop().await;
    ingest.stop().await;
    cluster.stop().await;
}

/// NATS stops: ingest answers UNAVAILABLE within its bound (1 s) and
/// stores nothing; the query replica keeps answering, reports NOT_SERVING
/// once stale. NATS starts again: both recover on their own.
#[tokio::test]
async fn nats_stopping_and_starting_again_is_survived() {
    let dir = tempfile::tempdir().expect("dir");
    let port = free_ports(1)[0];
    let config = single_server_config(dir.path(), port, true);
    let mut nats = NatsServer::start(&config, port).await;
    let settings = JetStreamSettings::new(format!("nats://127.0.0.1:{port}"));
    let (ingest_dir, query_dir) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
    let ingest = ingest_on(&settings, ingest_dir.path()).await;
    let query = query_on(
        &settings,
        query_dir.path(),
        QuerySettings {
            stale_timeout: Duration::from_secs(3),
            ..QuerySettings::default()
        },
    )
    .await;
    let mut submit = ingest_client(ingest.addr).await;
    let mut read = query_client(query.addr).await;
    let first = submit
        .submit_report(request("before", numbered_report(1)))
        .await
        .expect("accepted")
        .into_inner();
    read.get_report(v1::GetReportRequest {
        report_id: first.report_id.clone(),
        min_position: first.position,
    })
    .await
    .expect("followed");

    nats.kill().await;
    let status = tokio::time::timeout(PATIENCE, submit.submit_report(request("during", numbered_report(2))))
        .await
        .expect("an answer, not a hang")
        .expect_err("NATS is down");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    // The replica serves what it has, and says it is stale.
    read.get_report(v1::GetReportRequest {
        report_id: first.report_id.clone(),
        min_position: 0,
    })
    .await
    .expect("still answering");
    let mut health = tonic_health::pb::health_client::HealthClient::new(
        tonic::transport::Channel::from_shared(format!("http://{}", query.addr))
            .expect("url")
            .connect()
            .await
            .expect("connect"),
    );
    let status_of = |health: &mut tonic_health::pb::health_client::HealthClient<tonic::transport::Channel>| {
        let mut health = health.clone();
        async move {
            health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: "truce.v1.QueryService".into(),
                })
                .await
                .expect("health")
                .into_inner()
                .status
        }
    };
    let not_serving = tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    let deadline = Instant::now() + PATIENCE;
    while status_of(&mut health).await != not_serving {
        assert!(Instant::now() < deadline, "health never said NOT_SERVING");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    nats.restart().await;
    let second = submit_until_acknowledged(&mut submit, "after", numbered_report(3)).await;
    assert_eq!(second.position, 2, "nothing was stored while NATS was down");
    read.get_report(v1::GetReportRequest {
        report_id: second.report_id,
        min_position: second.position,
    })
    .await
    .expect("the replica follows again");
    let deadline = Instant::now() + PATIENCE;
    while status_of(&mut health).await != serving {
        assert!(Instant::now() < deadline, "health never recovered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    query.stop().await;
    ingest.stop().await;
    nats.kill().await;
}

/// An ingest service started while NATS has no JetStream yet (a server
/// still starting, a cluster still forming) waits for JetStream to answer,
/// then serves.
#[tokio::test]
async fn an_ingest_started_before_jetstream_serves_once_it_is_up() {
    let dir = tempfile::tempdir().expect("dir");
    let port = free_ports(1)[0];
    let plain = single_server_config(dir.path(), port, false);
    let with_jetstream = single_server_config(dir.path(), port, true);
    let mut without_jetstream = NatsServer::start(&plain, port).await;
    let settings = JetStreamSettings::new(format!("nats://127.0.0.1:{port}"));
    let ingest_dir = tempfile::tempdir().expect("dir");
    let (ingest, mut nats) = tokio::join!(ingest_on(&settings, ingest_dir.path()), async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        without_jetstream.kill().await;
        NatsServer::start(&with_jetstream, port).await
    });
    let accepted = ingest_client(ingest.addr)
        .await
        .submit_report(request("first", numbered_report(1)))
        .await
        .expect("accepted once JetStream is up")
        .into_inner();
    assert_eq!(accepted.position, 1);
    ingest.stop().await;
    nats.kill().await;
}
