//! Subscribe's guarantees, case by case, over real gRPC.

use std::time::Duration;

use tonic::Code;
use truce_proto::v1::{self, subscribe_request::Start, subscribe_response::Kind};
use truce_tests::{
    PATIENCE, Pair, crossing_report, ingest_client, numbered_report, query_client, request, start_ingest, start_query,
    stream::{self, changes_through, checkpoint, next},
    submit_many,
};

/// A report in its own incident (far apart in time), in `category`.
fn report_in(n: u32, category: v1::Category) -> v1::Report {
    let mut report = numbered_report(n);
    report.category = category as i32;
    report
}

#[tokio::test]
async fn resume_after_a_disconnect_mid_burst_repeats_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pair = Pair::start(dir.path()).await;
    let mut ingest = pair.ingest_client().await;
    let mut query = pair.query_client().await;
    let filter = "category = AIR_STRIKE";
    let mut first = query
        .subscribe(stream::request(filter, Start::FromBeginning(true)))
        .await
        .unwrap()
        .into_inner();
    let writer = tokio::spawn(async move {
        let reports = (0..3000).map(|n| {
            let c = if n % 3 == 0 {
                v1::Category::AirStrike
            } else {
                v1::Category::Shelling
            };
            report_in(n, c)
        });
        submit_many(&mut ingest, reports).await
    });
    // Take some changes, then drop the connection mid-burst.
    let mut seen = Vec::new();
    let mut token = String::new();
    while seen.len() < 200 {
        let kind = next(&mut first).await.unwrap();
        if let Kind::Change(c) = &kind {
            seen.push(c.position);
        }
        if let Some((_, t)) = checkpoint(&kind) {
            token = t.to_owned();
        }
    }
    drop(first);
    let head = writer.await.unwrap();
    let mut resumed = query
        .subscribe(stream::request(filter, Start::ResumeToken(token)))
        .await
        .unwrap()
        .into_inner();
    seen.extend(changes_through(&mut resumed, head).await.into_iter().map(|(p, _)| p));
    let expected: Vec<u64> = (1..=head).filter(|p| (p - 1) % 3 == 0).collect();
    assert_eq!(seen, expected);
    pair.stop().await;
}

#[tokio::test]
async fn resume_works_across_a_query_restart_and_on_another_query_process() {
    let ingest_dir = tempfile::tempdir().unwrap();
    let (replica_a, replica_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ingest_server = start_ingest(ingest_dir.path()).await;
    let mut ingest = ingest_client(ingest_server.addr).await;
    let query_a = start_query(ingest_server.addr, replica_a.path()).await;
    let mut client_a = query_client(query_a.addr).await;
    let filter = "killed_high >= 1";
    let mut sub = client_a
        .subscribe(stream::request(filter, Start::FromNow(true)))
        .await
        .unwrap()
        .into_inner();
    let head = submit_many(&mut ingest, (0..100).map(numbered_report)).await;
    let first: Vec<_> = changes_through(&mut sub, 40).await;
    let token = {
        // The token of the last change processed.
        let last = first.last().unwrap().0;
        format!("{}", last)
    };
    drop(sub);
    query_a.stop().await;

    // The same position on a second process following the same log.
    let query_b = start_query(ingest_server.addr, replica_b.path()).await;
    let mut client_b = query_client(query_b.addr).await;
    let resume_token = {
        let mut probe = client_b
            .subscribe(stream::request(filter, Start::AfterPosition(token.parse().unwrap())))
            .await
            .unwrap()
            .into_inner();
        let Kind::Subscribed(s) = next(&mut probe).await.unwrap() else {
            panic!()
        };
        s.resume_token
    };
    let mut on_b = client_b
        .subscribe(stream::request(filter, Start::ResumeToken(resume_token.clone())))
        .await
        .unwrap()
        .into_inner();
    let rest_b = changes_through(&mut on_b, head).await;

    // And on the first process after its restart, with the same token.
    let query_a = start_query(ingest_server.addr, replica_a.path()).await;
    let mut client_a = query_client(query_a.addr).await;
    let mut on_a = client_a
        .subscribe(stream::request(filter, Start::ResumeToken(resume_token)))
        .await
        .unwrap()
        .into_inner();
    let rest_a = changes_through(&mut on_a, head).await;
    assert_eq!(rest_a, rest_b);
    let all: Vec<u64> = first.iter().chain(rest_a.iter()).map(|(p, _)| *p).collect();
    assert_eq!(
        all,
        (1..=head).collect::<Vec<_>>(),
        "every report is a change with killed_high >= 1"
    );
    drop((on_a, on_b));
    query_a.stop().await;
    query_b.stop().await;
    ingest_server.stop().await;
}

#[tokio::test]
async fn snapshot_then_live_has_an_exact_seam_under_a_burst() {
    let dir = tempfile::tempdir().unwrap();
    let pair = Pair::start(dir.path()).await;
    let mut ingest = pair.ingest_client().await;
    let mut query = pair.query_client().await;
    // Incidents that keep changing: reports grouped by area into a few
    // incidents, plus distinct ones.
    submit_many(&mut ingest, (0..300).map(numbered_report)).await;
    let mut writer_client = ingest.clone();
    let writer = tokio::spawn(async move {
        let mut last = 0;
        for round in 0..20 {
            let reports = (0..50).map(|n| {
                let mut r = numbered_report(n * 7 % 300);
                r.summary = format!("update {round}-{n}");
                r.casualties[0].killed = Some(v1::CountRange {
                    low: 1,
                    best: None,
                    high: round + 1,
                });
                r
            });
            last = submit_many(&mut writer_client, reports).await;
        }
        last
    });
    tokio::time::sleep(Duration::from_millis(30)).await;
    let mut request = stream::request("killed_high >= 5", Start::FromNow(true));
    request.snapshot = true;
    let mut sub = query.subscribe(request).await.unwrap().into_inner();
    let Kind::Subscribed(subscribed) = next(&mut sub).await.unwrap() else {
        panic!()
    };
    let at = subscribed.position;
    // The client's view: incident id -> summary.
    let mut view = std::collections::BTreeMap::new();
    loop {
        match next(&mut sub).await.unwrap() {
            Kind::Snapshot(s) => {
                assert!(s.updated_position <= at, "snapshot shows a change after its position");
                view.insert(s.incident_id.clone(), s);
            }
            Kind::SnapshotEnd(end) => {
                assert_eq!(end.position, at);
                break;
            }
            other => panic!("unexpected {other:?} in the snapshot"),
        }
    }
    let head = writer.await.unwrap();
    let mut last_position = at;
    loop {
        let kind = next(&mut sub).await.unwrap();
        match &kind {
            Kind::Change(c) => {
                assert!(c.position > last_position, "repeated or out of order at the seam");
                last_position = c.position;
                let s = c.incident.clone().unwrap();
                view.insert(s.incident_id.clone(), s);
            }
            Kind::LeftFilter(c) => {
                last_position = c.position;
                view.remove(&c.incident.as_ref().unwrap().incident_id);
            }
            _ => {}
        }
        if checkpoint(&kind).is_some_and(|(p, _)| p >= head) {
            break;
        }
    }
    // The client's view equals a fresh listing at the head.
    let mut listed = std::collections::BTreeMap::new();
    let mut page_token = String::new();
    loop {
        let page = query
            .list_incidents(v1::ListIncidentsRequest {
                filter: "killed_high >= 5".into(),
                page_size: 1000,
                page_token,
                min_position: head,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.position, head);
        for s in page.incidents {
            listed.insert(s.incident_id.clone(), s);
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(view, listed);
    pair.stop().await;
}

#[tokio::test]
async fn an_incident_that_stops_matching_leaves_the_filter_once() {
    let dir = tempfile::tempdir().unwrap();
    let pair = Pair::start(dir.path()).await;
    let mut ingest = pair.ingest_client().await;
    let mut query = pair.query_client().await;
    let mut sub = query
        .subscribe(stream::request("report_count = 1", Start::FromNow(true)))
        .await
        .unwrap()
        .into_inner();
    let opened = ingest
        .submit_report(request("", crossing_report()))
        .await
        .unwrap()
        .into_inner();
    let mut second = crossing_report();
    second.incident_id = opened.incident_id.clone();
    let joined = ingest
        .submit_report(request("", second.clone()))
        .await
        .unwrap()
        .into_inner();
    let third = ingest.submit_report(request("", second)).await.unwrap().into_inner();
    let seen = changes_through(&mut sub, third.position).await;
    assert_eq!(seen, [(opened.position, true), (joined.position, false)]);
    // The same from history.
    let mut replay = query
        .subscribe(stream::request("report_count = 1", Start::FromBeginning(true)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(changes_through(&mut replay, third.position).await, seen);
    pair.stop().await;
}

#[tokio::test]
async fn progress_advances_past_changes_that_do_not_match() {
    let dir = tempfile::tempdir().unwrap();
    let pair = Pair::start(dir.path()).await;
    let mut ingest = pair.ingest_client().await;
    let mut query = pair.query_client().await;
    let mut sub = query
        .subscribe(stream::request("category = TUNNEL_ACTIVITY", Start::FromNow(true)))
        .await
        .unwrap()
        .into_inner();
    let head = submit_many(&mut ingest, (0..50).map(numbered_report)).await;
    let token = loop {
        if let Kind::Heartbeat(h) = next(&mut sub).await.unwrap()
            && h.position == head
        {
            assert_eq!(h.head_position, head);
            assert!(h.log_heard_at.is_some());
            break h.resume_token;
        }
    };
    // Resuming from the heartbeat repeats nothing.
    let mut resumed = query
        .subscribe(stream::request("", Start::ResumeToken(token)))
        .await
        .unwrap()
        .into_inner();
    let tunnel = report_in(99, v1::Category::TunnelActivity);
    let accepted = ingest.submit_report(request("", tunnel)).await.unwrap().into_inner();
    assert_eq!(
        changes_through(&mut resumed, accepted.position).await,
        [(head + 1, true)]
    );
    assert_eq!(changes_through(&mut sub, accepted.position).await, [(head + 1, true)]);
    pair.stop().await;
}

#[tokio::test]
async fn a_slow_reader_falls_back_to_the_log_and_gets_everything_while_a_fast_one_is_unaffected() {
    const CHANGES: u64 = 50_000;
    let dir = tempfile::tempdir().unwrap();
    // The slow reader takes a message a second, which the server sees only
    // when the client's HTTP/2 window is spent (megabytes of changes): a
    // burst that outlasts the stall timeout would end it as stalled. This
    // test is about falling back to the log, so the timeout outlasts any
    // burst.
    let pair = Pair::start_custom(
        truce_ingest::IngestConfig {
            data_dir: dir.path().to_owned(),
            ..Default::default()
        },
        truce_query::QuerySettings {
            stall_timeout: Duration::from_secs(600),
            ..Default::default()
        },
    )
    .await;
    let mut ingest = pair.ingest_client().await;
    let mut query = pair.query_client().await;
    // Each reader on its own connection, as separate clients would be: an
    // unread stream holds its connection's HTTP/2 window.
    let mut slow = query
        .subscribe(stream::request("", Start::FromNow(true)))
        .await
        .unwrap()
        .into_inner();
    let mut fast_client = pair.query_client().await;
    let mut fast = fast_client
        .subscribe(stream::request("", Start::FromNow(true)))
        .await
        .unwrap()
        .into_inner();
    next(&mut slow).await.unwrap();
    let writer = tokio::spawn(async move {
        let mut head = 0;
        for chunk in 0..(CHANGES / 5000) as u32 {
            head = submit_many(&mut ingest, (0..5000).map(|n| numbered_report(chunk * 5000 + n))).await;
        }
        head
    });
    // The fast reader keeps up with the writer.
    let fast_reader = tokio::spawn(async move {
        let seen = changes_through(&mut fast, CHANGES).await;
        assert_eq!(seen.len() as u64, CHANGES);
        std::time::Instant::now()
    });
    // The slow one takes a message a second while the burst goes on.
    let started = std::time::Instant::now();
    let mut slow_seen = Vec::new();
    while !writer.is_finished() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Kind::Change(c) = next(&mut slow).await.unwrap() {
            slow_seen.push(c.position);
        }
    }
    let head = writer.await.unwrap();
    let fast_done = fast_reader.await.unwrap();
    assert_eq!(head, CHANGES);
    eprintln!(
        "burst of {CHANGES} took {:?}; the fast reader had everything {:?} after the start",
        started.elapsed(),
        fast_done - started
    );
    // Then it reads on at full speed: everything arrives, once, in order,
    // with a fall-back to the log on the way.
    let mut fell_behind = false;
    loop {
        let kind = next(&mut slow).await.unwrap();
        match &kind {
            Kind::Change(c) => slow_seen.push(c.position),
            Kind::FellBehind(_) => fell_behind = true,
            _ => {}
        }
        if checkpoint(&kind).is_some_and(|(p, _)| p >= head) {
            break;
        }
    }
    assert!(fell_behind, "the slow reader should have fallen behind the live buffer");
    assert_eq!(slow_seen, (1..=head).collect::<Vec<_>>());
    pair.stop().await;
}

#[tokio::test]
async fn a_stalled_reader_is_ended_with_its_resume_token() {
    let dir = tempfile::tempdir().unwrap();
    let settings = truce_query::QuerySettings {
        stall_timeout: Duration::from_millis(500),
        ..Default::default()
    };
    let config = truce_ingest::IngestConfig {
        data_dir: dir.path().to_owned(),
        ..Default::default()
    };
    let pair = Pair::start_custom(config, settings).await;
    let mut ingest = pair.ingest_client().await;
    let mut query = pair.query_client().await;
    let mut stalled_client = pair.query_client().await;
    let mut stalled = stalled_client
        .subscribe(stream::request("", Start::FromNow(true)))
        .await
        .unwrap()
        .into_inner();
    next(&mut stalled).await.unwrap();
    // Far more than the queue and the HTTP/2 windows (2 MiB a stream for
    // this client) hold, and nobody reads.
    let big = |n| {
        let mut report = numbered_report(n);
        report.summary = "x".repeat(4000);
        report
    };
    let head = submit_many(&mut ingest, (0..2000).map(big)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut seen = Vec::new();
    let status = tokio::time::timeout(PATIENCE, async {
        loop {
            match next(&mut stalled).await {
                Ok(Kind::Change(c)) => seen.push(c.position),
                Ok(_) => {}
                Err(status) => break status,
            }
        }
    })
    .await
    .expect("the stalled stream was not ended");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        (seen.len() as u64) < head,
        "the stream must have stalled before the end"
    );
    use tonic_types::StatusExt;
    let info = status.get_error_details().error_info().cloned().expect("error info");
    assert_eq!(info.reason, "SLOW_CONSUMER");
    let position: u64 = info.metadata["position"].parse().unwrap();
    assert_eq!(
        seen.last().copied().unwrap_or(0),
        position,
        "the token is where delivery stopped"
    );
    // Resuming from it gets exactly the rest.
    let mut resumed = query
        .subscribe(stream::request(
            "",
            Start::ResumeToken(info.metadata["resume_token"].clone()),
        ))
        .await
        .unwrap()
        .into_inner();
    seen.extend(changes_through(&mut resumed, head).await.into_iter().map(|(p, _)| p));
    assert_eq!(seen, (1..=head).collect::<Vec<_>>());
    pair.stop().await;
}

#[tokio::test]
async fn bad_requests_and_unknown_positions_fail_before_the_stream_opens() {
    let dir = tempfile::tempdir().unwrap();
    let pair = Pair::start(dir.path()).await;
    let other_dir = tempfile::tempdir().unwrap();
    let other = Pair::start(other_dir.path()).await;
    let mut query = pair.query_client().await;
    let mut other_query = other.query_client().await;
    let mut ingest = pair.ingest_client().await;
    ingest.submit_report(request("", crossing_report())).await.unwrap();

    for (filter, column) in [
        ("zone = ", 8),
        ("(category = AIR_STRIKE", 23),
        ("killed_high >= -1", 16),
    ] {
        let status = query
            .subscribe(stream::request(filter, Start::FromNow(true)))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{filter}");
        assert!(
            status.message().contains(&format!("column {column}")),
            "{filter}: {}",
            status.message()
        );
    }
    for token in ["", "r1.", "r1.zz.1", "garbage", "r1.0011.-4"] {
        let status = query
            .subscribe(stream::request("", Start::ResumeToken(token.into())))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{token:?}");
    }
    let mut bad_heartbeat = stream::request("", Start::FromNow(true));
    bad_heartbeat.heartbeat_interval = Some(prost_types::Duration {
        seconds: 0,
        nanos: 1000,
    });
    assert_eq!(
        query.subscribe(bad_heartbeat).await.unwrap_err().code(),
        Code::InvalidArgument
    );

    // A token from another log is OUT_OF_RANGE with where to start over.
    let mut elsewhere = other_query
        .subscribe(stream::request("", Start::FromNow(true)))
        .await
        .unwrap()
        .into_inner();
    let Kind::Subscribed(s) = next(&mut elsewhere).await.unwrap() else {
        panic!()
    };
    let status = query
        .subscribe(stream::request("", Start::ResumeToken(s.resume_token)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange);
    use tonic_types::StatusExt;
    let info = status.get_error_details().error_info().cloned().unwrap();
    assert_eq!(info.metadata["first_available_position"], "1");

    // A position ahead of the log is accepted and waits for it.
    let mut ahead = query
        .subscribe(stream::request("", Start::AfterPosition(3)))
        .await
        .unwrap()
        .into_inner();
    let Kind::Subscribed(s) = next(&mut ahead).await.unwrap() else {
        panic!()
    };
    assert_eq!(s.position, 3);
    for n in 0..3 {
        ingest.submit_report(request("", numbered_report(n))).await.unwrap();
    }
    assert_eq!(changes_through(&mut ahead, 4).await, [(4, true)]);
    drop((elsewhere, ahead));
    other.stop().await;
    pair.stop().await;
}

#[tokio::test]
async fn a_subscription_can_start_from_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let pair = Pair::start(dir.path()).await;
    let mut ingest = pair.ingest_client().await;
    let mut query = pair.query_client().await;
    submit_many(&mut ingest, (0..5).map(numbered_report)).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let cut = prost_types::Timestamp::from(std::time::SystemTime::now());
    tokio::time::sleep(Duration::from_millis(50)).await;
    let head = submit_many(&mut ingest, (5..8).map(numbered_report)).await;
    // A query replica on JetStream may trail the acknowledgements: the
    // time is looked up in what it has read.
    query
        .list_incidents(v1::ListIncidentsRequest {
            min_position: head,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut sub = query
        .subscribe(stream::request("", Start::FromTime(cut)))
        .await
        .unwrap()
        .into_inner();
    let Kind::Subscribed(s) = next(&mut sub).await.unwrap() else {
        panic!()
    };
    assert_eq!(s.position, 5);
    assert_eq!(changes_through(&mut sub, head).await, [(6, true), (7, true), (8, true)]);
    pair.stop().await;
}

#[tokio::test]
async fn two_thousand_idle_subscriptions_all_get_the_next_change_and_cancelling_frees_them() {
    const SUBSCRIPTIONS: usize = 2000;
    let dir = tempfile::tempdir().unwrap();
    let settings = truce_query::QuerySettings {
        caps: truce_serve::admission::Caps {
            total: SUBSCRIPTIONS,
            per_party: SUBSCRIPTIONS,
            per_address: SUBSCRIPTIONS,
        },
        ..Default::default()
    };
    let config = truce_ingest::IngestConfig {
        data_dir: dir.path().to_owned(),
        ..Default::default()
    };
    let pair = Pair::start_custom(config, settings).await;
    let mut ingest = pair.ingest_client().await;
    // Spread over 20 connections, as many clients would be.
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(query_client(pair.query).await);
    }
    let open_all = |clients: Vec<v1::query_service_client::QueryServiceClient<tonic::transport::Channel>>| async move {
        let mut streams = Vec::new();
        for i in 0..SUBSCRIPTIONS {
            let mut client = clients[i % clients.len()].clone();
            let mut request = stream::request("", Start::FromNow(true));
            request.heartbeat_interval = Some(prost_types::Duration { seconds: 60, nanos: 0 });
            let mut sub = client.subscribe(request).await.unwrap().into_inner();
            let Kind::Subscribed(_) = next(&mut sub).await.unwrap() else {
                panic!()
            };
            streams.push(sub);
        }
        streams
    };
    let mut streams = open_all(clients.clone()).await;
    // One more is refused: the cap is reached.
    let refused = clients[0].subscribe(stream::request("", Start::FromNow(true))).await;
    let status = match refused {
        Err(status) => status,
        Ok(response) => {
            let mut s = response.into_inner();
            next(&mut s).await.unwrap_err()
        }
    };
    assert_eq!(status.code(), Code::ResourceExhausted);

    let accepted = ingest
        .submit_report(request("", crossing_report()))
        .await
        .unwrap()
        .into_inner();
    for sub in &mut streams {
        loop {
            match next(sub).await.unwrap() {
                Kind::Change(c) => {
                    assert_eq!(c.position, accepted.position);
                    break;
                }
                Kind::CaughtUp(_) => continue,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    // Cancelling frees every place at once: as many can be opened again.
    drop(streams);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let streams = open_all(clients).await;
    assert_eq!(streams.len(), SUBSCRIPTIONS);
    drop(streams);
    pair.stop().await;
}

#[tokio::test]
async fn a_stale_upstream_shows_in_progress_and_ends_the_stream() {
    let ingest_dir = tempfile::tempdir().unwrap();
    let replica = tempfile::tempdir().unwrap();
    let ingest_server = start_ingest(ingest_dir.path()).await;
    let mut ingest = ingest_client(ingest_server.addr).await;
    ingest.submit_report(request("", crossing_report())).await.unwrap();
    let query_server = truce_tests::start_query_with(
        ingest_server.addr,
        replica.path(),
        truce_query::QuerySettings {
            stale_timeout: Duration::from_secs(3),
            ..Default::default()
        },
    )
    .await;
    let mut query = query_client(query_server.addr).await;
    let mut sub = query
        .subscribe(stream::request("", Start::FromBeginning(true)))
        .await
        .unwrap()
        .into_inner();
    changes_through(&mut sub, 1).await;
    ingest_server.stop().await;
    // Heartbeats go on with a log_heard_at that no longer advances, then
    // the stream ends UNAVAILABLE.
    let mut heard = Vec::new();
    let status = loop {
        match next(&mut sub).await {
            Ok(Kind::Heartbeat(h)) => heard.push(h.log_heard_at.unwrap()),
            Ok(_) => {}
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        heard.len() >= 2 && heard.windows(2).skip(2).all(|w| w[0] == w[1]),
        "{heard:?}"
    );
    // The service itself still answers from what it has.
    let listed = query
        .list_incidents(v1::ListIncidentsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.incidents.len(), 1);
    query_server.stop().await;
}

#[tokio::test]
async fn list_then_subscribe_is_exact_and_pages_hold_still_while_writes_continue() {
    // A filter that scans every incident, and one that starts from the
    // incidents indexed by a value, in orders that stop early or not.
    for (filter, order) in [
        ("killed_high >= 3", "killed_high desc"),
        ("reporter = \"idf\" AND killed_high >= 3", "opened"),
        ("killed_high >= 3 AND category = LINE_CROSSING", "opened desc"),
        ("reporter = \"idf\" AND killed_high >= 3", "updated desc"),
    ] {
        list_then_subscribe(filter, order).await;
    }
}

async fn list_then_subscribe(filter: &str, order: &str) {
    let dir = tempfile::tempdir().expect("as the test expects");
    let pair = Pair::start(dir.path()).await;
    let mut ingest = pair.ingest_client().await;
    let mut query = pair.query_client().await;
    submit_many(&mut ingest, (0..200).map(numbered_report)).await;
    // Writes go on while the client pages through the listing: each one
    // changes an incident already listed, or opens a new one.
    let mut writer_client = ingest.clone();
    let writer = tokio::spawn(async move {
        let reports = (0..400).map(|n| {
            let mut r = numbered_report(if n % 2 == 0 { n % 200 } else { 1000 + n });
            r.casualties[0].killed = Some(v1::CountRange {
                low: 0,
                best: None,
                high: n % 7,
            });
            r
        });
        submit_many(&mut writer_client, reports).await
    });
    let mut view = std::collections::BTreeMap::new();
    let mut listed = Vec::new();
    let mut page_token = String::new();
    let mut listed_at = None;
    loop {
        let page = query
            .list_incidents(v1::ListIncidentsRequest {
                filter: filter.into(),
                page_size: 7,
                page_token,
                order_by: order.into(),
                ..Default::default()
            })
            .await
            .expect("as the test expects")
            .into_inner();
        // Every page reflects the first page's position.
        assert_eq!(*listed_at.get_or_insert(page.position), page.position);
        for s in page.incidents {
            assert!(s.updated_position <= page.position);
            listed.push(
                s.incident_id
                    .trim_start_matches("inc-")
                    .parse::<u64>()
                    .expect("as the test expects"),
            );
            assert!(
                view.insert(s.incident_id.clone(), s).is_none(),
                "an incident listed twice"
            );
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    match order {
        "opened" => assert!(listed.is_sorted(), "{listed:?}"),
        "opened desc" => assert!(listed.iter().rev().is_sorted(), "{listed:?}"),
        _ => {}
    }
    let at = listed_at.expect("as the test expects");
    let mut sub = query
        .subscribe(stream::request(filter, Start::AfterPosition(at)))
        .await
        .expect("as the test expects")
        .into_inner();
    let head = writer.await.expect("as the test expects");
    assert!(head > at, "the writes should go on past the listing's position");
    loop {
        let kind = next(&mut sub).await.expect("as the test expects");
        match &kind {
            Kind::Change(c) => {
                let s = c.incident.clone().expect("as the test expects");
                view.insert(s.incident_id.clone(), s);
            }
            Kind::LeftFilter(c) => {
                view.remove(&c.incident.as_ref().expect("as the test expects").incident_id);
            }
            _ => {}
        }
        if checkpoint(&kind).is_some_and(|(p, _)| p >= head) {
            break;
        }
    }
    let fresh = query
        .list_incidents(v1::ListIncidentsRequest {
            filter: filter.into(),
            page_size: 1000,
            min_position: head,
            ..Default::default()
        })
        .await
        .expect("as the test expects")
        .into_inner();
    let fresh: std::collections::BTreeMap<_, _> = fresh
        .incidents
        .into_iter()
        .map(|s| (s.incident_id.clone(), s))
        .collect();
    assert_eq!(view, fresh, "listing at P plus changes after P is the current state");
    pair.stop().await;
}
