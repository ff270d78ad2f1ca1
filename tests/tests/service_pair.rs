//! The service pair end to end over real gRPC: submit, get, list,
//! subscribe, summarize, idempotency, bulk import and every kind of bad
//! input.

use std::time::Duration;

use tokio_stream::StreamExt;
use tonic::Code;
use truce_proto::v1::{self, subscribe_request::Start, subscribe_response::Kind};
use truce_tests::{PATIENCE, Pair, crossing_report, numbered_report, request, time, violations};

async fn next_message(stream: &mut tonic::Streaming<v1::SubscribeResponse>) -> v1::SubscribeResponse {
    tokio::time::timeout(PATIENCE, stream.next())
        .await
        .expect("subscription stalled")
        .expect("subscription ended")
        .expect("subscription failed")
}

/// Skips heartbeats and catch-up markers.
async fn next_change(stream: &mut tonic::Streaming<v1::SubscribeResponse>) -> v1::IncidentChange {
    loop {
        match next_message(stream).await.kind {
            Some(Kind::Change(change)) => return change,
            Some(Kind::Heartbeat(_) | Kind::CaughtUp(_) | Kind::FellBehind(_)) => continue,
            other => panic!("expected a change, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_report_can_be_got_listed_and_seen_live() {
    let dir = tempfile::tempdir().unwrap();
    let pair = Pair::start(dir.path()).await;
    let mut ingest = pair.ingest_client().await;
    let mut query = pair.query_client().await;

    let mut live = query
        .subscribe(v1::SubscribeRequest {
            filter: "category = LINE_CROSSING AND area = \"rafah\"".into(),
            start: Some(Start::FromNow(true)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let Some(Kind::Subscribed(subscribed)) = next_message(&mut live).await.kind else {
        panic!("the first message must confirm the subscription");
    };
    assert_eq!(subscribed.position, 0);

    let accepted = ingest
        .submit_report(request("idf-1", crossing_report()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(accepted.report_id, "rpt-1");
    assert_eq!(accepted.incident_id, "inc-1");
    assert!(accepted.opened_incident && !accepted.replayed);
    assert_eq!(accepted.position, 1);

    let change = next_change(&mut live).await;
    assert_eq!(change.position, 1);
    assert_eq!(change.kind, v1::ChangeKind::IncidentOpened as i32);
    assert_eq!(change.report.as_ref().unwrap().report_id, "rpt-1");
    assert_eq!(change.incident.as_ref().unwrap().incident_id, "inc-1");

    // The query side has applied it once the change was streamed.
    let report = query
        .get_report(v1::GetReportRequest {
            report_id: "rpt-1".into(),
            min_position: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.report.unwrap().report.unwrap(), crossing_report());
    let incident = query
        .get_incident(v1::GetIncidentRequest {
            incident_id: "inc-1".into(),
            min_position: 1,
        })
        .await
        .unwrap()
        .into_inner()
        .incident
        .unwrap();
    assert_eq!(incident.reports.len(), 1);
    assert_eq!(incident.casualties[0].claimed_by, "idf");
    assert_eq!(incident.attributions[0].claim.as_ref().unwrap().affiliation, "hamas");

    let listed = query
        .list_incidents(v1::ListIncidentsRequest {
            filter: "killed_high >= 1 AND reporter = \"idf\"".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.position, 1);
    assert_eq!(
        listed
            .incidents
            .iter()
            .map(|i| i.incident_id.as_str())
            .collect::<Vec<_>>(),
        ["inc-1"]
    );
    let none = query
        .list_incidents(v1::ListIncidentsRequest {
            filter: "category = AIR_STRIKE".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(none.incidents.is_empty());

    for (missing, code) in [("inc-99", Code::NotFound), ("inc-x", Code::InvalidArgument)] {
        let status = query
            .get_incident(v1::GetIncidentRequest {
                incident_id: missing.into(),
                min_position: 0,
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), code, "{missing}");
    }
    pair.stop().await;
}

#[tokio::test]
async fn claims_about_one_event_stay_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let pair = Pair::start(dir.path()).await;
    let mut ingest = pair.ingest_client().await;
    let mut query = pair.query_client().await;

    let strike = |party: &str, claimant: &str, low, high| {
        let mut r = crossing_report();
        r.reporting_party = party.into();
        r.category = v1::Category::AirStrike as i32;
        r.attributions.clear();
        r.casualties = vec![v1::CasualtyClaim {
            group: v1::CasualtyGroup::Unknown as i32,
            killed: Some(v1::CountRange { low, best: None, high }),
            injured: None,
            claimed_by: claimant.into(),
        }];
        r
    };
    let first = ingest
        .submit_report(request("", strike("idf", "idf", 5, 5)))
        .await
        .unwrap()
        .into_inner();
    // Near in place and time, same category: the same incident.
    let second = ingest
        .submit_report(request("", strike("hamas", "gaza-health-ministry", 20, 21)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.incident_id, first.incident_id);
    assert!(!second.opened_incident);
    // Another category at the same place and time: another incident.
    let crossing = ingest
        .submit_report(request("", crossing_report()))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(crossing.incident_id, first.incident_id);
    // A report may name its incident explicitly, whatever it claims.
    let mut linked = crossing_report();
    linked.incident_id = first.incident_id.clone();
    let linked = ingest.submit_report(request("", linked)).await.unwrap().into_inner();
    assert_eq!(linked.incident_id, first.incident_id);

    let incident = query
        .get_incident(v1::GetIncidentRequest {
            incident_id: first.incident_id.clone(),
            min_position: linked.position,
        })
        .await
        .unwrap()
        .into_inner()
        .incident
        .unwrap();
    let summary = incident.summary.unwrap();
    assert_eq!(
        summary.killed,
        Some(v1::CountRange {
            low: 1,
            best: None,
            high: 21
        })
    );
    assert_eq!(summary.reporters, ["idf", "hamas"]);
    assert_eq!(summary.report_count, 3);
    let claims: Vec<(String, u32, u32)> = incident
        .casualties
        .iter()
        .map(|c| {
            let k = c.killed_total.unwrap();
            (c.claimed_by.clone(), k.low, k.high)
        })
        .collect();
    assert_eq!(
        claims,
        [
            ("idf".into(), 5, 5),
            ("gaza-health-ministry".into(), 20, 21),
            ("idf".into(), 1, 1)
        ]
    );

    let summarized = query
        .summarize(v1::SummarizeRequest {
            occurred_start: Some(time("2025-11-22T00:00:00Z")),
            occurred_end: Some(time("2025-11-23T00:00:00Z")),
            filter: String::new(),
            min_position: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summarized.total.unwrap().incidents, 2);
    let by_category: Vec<(String, u32)> = summarized
        .by_category
        .iter()
        .map(|k| (k.key.clone(), k.tally.unwrap().incidents))
        .collect();
    assert_eq!(by_category, [("AIR_STRIKE".into(), 1), ("LINE_CROSSING".into(), 2)]);
    pair.stop().await;
}

#[tokio::test]
async fn retries_are_idempotent_and_conflicting_reuse_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pair = Pair::start(dir.path()).await;
    let mut ingest = pair.ingest_client().await;
    let mut query = pair.query_client().await;

    let original = ingest
        .submit_report(request("idf-7", crossing_report()))
        .await
        .unwrap()
        .into_inner();
    let retry = ingest
        .submit_report(request("idf-7", crossing_report()))
        .await
        .unwrap()
        .into_inner();
    assert!(retry.replayed);
    assert_eq!(
        (retry.report_id, retry.incident_id, retry.position, retry.received_at),
        (
            original.report_id,
            original.incident_id,
            original.position,
            original.received_at
        )
    );
    let mut changed = crossing_report();
    changed.summary = "a different account".into();
    let status = ingest
        .submit_report(request("idf-7", changed.clone()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    // Keys are per party: another party may use the same key.
    changed.reporting_party = "hamas".into();
    let other = ingest
        .submit_report(request("idf-7", changed))
        .await
        .unwrap()
        .into_inner();
    assert!(!other.replayed);
    assert_eq!(other.position, 2);

    let listed = query
        .list_incidents(v1::ListIncidentsRequest {
            min_position: other.position,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let total: u32 = listed.incidents.iter().map(|i| i.report_count).sum();
    assert_eq!(total, 2, "retries store nothing");
    pair.stop().await;
}

#[tokio::test]
async fn every_invalid_field_is_named_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let pair = Pair::start(dir.path()).await;
    let mut ingest = pair.ingest_client().await;
    let mut query = pair.query_client().await;

    type Mutation = fn(&mut v1::SubmitReportRequest);
    let r = |req: &mut v1::SubmitReportRequest| req.report.as_mut().unwrap() as *mut v1::Report;
    let _ = r;
    let cases: Vec<(&str, Mutation, &str)> = vec![
        ("report", |q| q.report = None, "is required"),
        (
            "client_report_id",
            |q| q.client_report_id = "has spaces".into(),
            "letters, digits",
        ),
        (
            "report.reporting_party",
            |q| q.report.as_mut().unwrap().reporting_party = "IDF".into(),
            "party id",
        ),
        (
            "report.location.point.latitude",
            |q| {
                q.report
                    .as_mut()
                    .unwrap()
                    .location
                    .as_mut()
                    .unwrap()
                    .point
                    .as_mut()
                    .unwrap()
                    .latitude = 91.0
            },
            "between -90 and 90",
        ),
        (
            "report.location.point.longitude",
            |q| {
                q.report
                    .as_mut()
                    .unwrap()
                    .location
                    .as_mut()
                    .unwrap()
                    .point
                    .as_mut()
                    .unwrap()
                    .longitude = f64::NAN
            },
            "between -180 and 180",
        ),
        (
            "report.occurred_at",
            |q| q.report.as_mut().unwrap().occurred_at = Some(time("2100-01-01T00:00:00Z")),
            "must not be in the future",
        ),
        (
            "report.occurred_at",
            |q| q.report.as_mut().unwrap().occurred_at = None,
            "is required",
        ),
        (
            "report.casualties[0].killed",
            |q| {
                q.report.as_mut().unwrap().casualties[0].killed = Some(v1::CountRange {
                    low: 21,
                    best: None,
                    high: 20,
                })
            },
            "high (20) must be at least low (21)",
        ),
        (
            "report.category",
            |q| q.report.as_mut().unwrap().category = 0,
            "UNSPECIFIED",
        ),
        (
            "report.category",
            |q| q.report.as_mut().unwrap().category = 99,
            "not a known value",
        ),
        (
            "report.location.zone",
            |q| q.report.as_mut().unwrap().location.as_mut().unwrap().zone = 0,
            "UNSPECIFIED",
        ),
        (
            "report.summary",
            |q| q.report.as_mut().unwrap().summary = "x".repeat(4001),
            "at most 4000",
        ),
        (
            "report.summary",
            |q| q.report.as_mut().unwrap().summary = " ".into(),
            "is required",
        ),
        (
            "report.sources",
            |q| {
                let s = q.report.as_ref().unwrap().sources[0].clone();
                q.report.as_mut().unwrap().sources = vec![s; 33];
            },
            "at most 32 items",
        ),
        (
            "report.sources[0].url",
            |q| q.report.as_mut().unwrap().sources[0].url = "ftp://x".into(),
            "http or https",
        ),
        (
            "report.evidence[0].sha256",
            |q| q.report.as_mut().unwrap().evidence[0].sha256 = "abc".into(),
            "64 lowercase hex",
        ),
        (
            "report.incident_id",
            |q| q.report.as_mut().unwrap().incident_id = "incident-1".into(),
            "inc-",
        ),
        (
            "report.location.area",
            |q| {
                let l = q.report.as_mut().unwrap().location.as_mut().unwrap();
                l.point = None;
                l.area.clear();
            },
            "a point or a named area",
        ),
    ];
    for (field, mutate, rule) in cases {
        let mut req = request("bad-1", crossing_report());
        mutate(&mut req);
        let status = ingest.submit_report(req).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        let found = violations(&status);
        assert!(
            found.iter().any(|(f, d)| f == field && d.contains(rule)),
            "{field} / {rule}: got {found:?}"
        );
    }

    let mut unknown = crossing_report();
    unknown.incident_id = "inc-404".into();
    let status = ingest.submit_report(request("", unknown)).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    // A message far beyond any report is refused before it is decoded.
    let mut huge = crossing_report();
    huge.summary = "x".repeat(1024 * 1024);
    let status = ingest.submit_report(request("", huge)).await.unwrap_err();
    assert!(
        matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{status:?}"
    );

    // Nothing partial was stored, and the key was not burnt.
    let listed = query
        .list_incidents(v1::ListIncidentsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.incidents.is_empty());
    assert_eq!(listed.position, 0);
    let ok = ingest
        .submit_report(request("bad-1", crossing_report()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((ok.position, ok.replayed), (1, false));

    // Bad filters say where and why.
    let status = query
        .list_incidents(v1::ListIncidentsRequest {
            filter: "zone = ATLINE".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("column 8"), "{}", status.message());
    assert_eq!(violations(&status)[0].0, "filter");
    let status = query
        .subscribe(v1::SubscribeRequest {
            filter: "killed_high >> 3".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    pair.stop().await;
}

#[tokio::test]
async fn bulk_import_answers_each_report_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let pair = Pair::start(dir.path()).await;
    let mut ingest = pair.ingest_client().await;
    const N: u32 = 2000;
    let requests: Vec<v1::SubmitReportsRequest> = (0..N)
        .map(|n| {
            let mut report = numbered_report(n);
            if n % 100 == 7 {
                report.location.as_mut().unwrap().point.as_mut().unwrap().latitude = -100.0;
            }
            v1::SubmitReportsRequest {
                request: Some(request(&format!("bulk-{n}"), report)),
            }
        })
        .collect();
    let mut results = ingest
        .submit_reports(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let mut accepted_positions = Vec::new();
    let mut index = 0u64;
    while let Some(result) = tokio::time::timeout(PATIENCE, results.next())
        .await
        .expect("bulk stalled")
    {
        let result = result.unwrap();
        assert_eq!(result.index, index);
        match result.result.unwrap() {
            v1::submit_reports_response::Result::Accepted(a) => {
                assert_ne!(index % 100, 7);
                accepted_positions.push(a.position);
            }
            v1::submit_reports_response::Result::Rejected(r) => {
                assert_eq!(index % 100, 7);
                assert_eq!(r.code, Code::InvalidArgument as i32);
                assert_eq!(r.field_violations[0].field, "report.location.point.latitude");
            }
        }
        index += 1;
    }
    assert_eq!(index, u64::from(N));
    // Accepted reports got consecutive positions, in the order sent.
    assert_eq!(accepted_positions, (1..=(N as u64 - 20)).collect::<Vec<_>>());
    pair.stop().await;
}

#[tokio::test]
async fn subscriptions_resume_from_a_position_and_heartbeat_when_idle() {
    let dir = tempfile::tempdir().unwrap();
    let pair = Pair::start(dir.path()).await;
    let mut ingest = pair.ingest_client().await;
    let mut query = pair.query_client().await;
    let mut last = v1::SubmitReportResponse::default();
    for n in 0..10 {
        let mut report = numbered_report(n);
        if n % 2 == 1 {
            report.category = v1::Category::AirStrike as i32;
        }
        last = ingest.submit_report(request("", report)).await.unwrap().into_inner();
    }
    // A query replica on JetStream may trail the acknowledgement; it is
    // caught up at 10 only once it has read 10.
    query
        .get_report(v1::GetReportRequest {
            report_id: last.report_id,
            min_position: last.position,
        })
        .await
        .unwrap();
    let mut stream = query
        .subscribe(v1::SubscribeRequest {
            filter: "category = AIR_STRIKE".into(),
            start: Some(Start::AfterPosition(4)),
            heartbeat_interval: Some(prost_types::Duration {
                seconds: 0,
                nanos: 200_000_000,
            }),
            snapshot: false,
        })
        .await
        .unwrap()
        .into_inner();
    let Some(Kind::Subscribed(s)) = next_message(&mut stream).await.kind else {
        panic!("no confirmation");
    };
    assert_eq!(s.position, 4);
    let mut positions = Vec::new();
    for _ in 0..3 {
        positions.push(next_change(&mut stream).await.position);
    }
    assert_eq!(positions, [6, 8, 10]);
    // Caught up, then idle: a heartbeat carries the head and a token for
    // position 10.
    let Some(Kind::CaughtUp(caught_up)) = next_message(&mut stream).await.kind else {
        panic!("expected caught_up");
    };
    assert_eq!(caught_up.position, 10);
    let Some(Kind::Heartbeat(heartbeat)) = next_message(&mut stream).await.kind else {
        panic!("expected a heartbeat");
    };
    assert_eq!((heartbeat.position, heartbeat.head_position), (10, 10));

    // Resuming from a change's token yields exactly the later changes.
    let mut resumed = query
        .subscribe(v1::SubscribeRequest {
            filter: "category = AIR_STRIKE".into(),
            start: Some(Start::ResumeToken(heartbeat.resume_token.clone())),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    next_message(&mut resumed).await;
    let mut strike = numbered_report(11);
    strike.category = v1::Category::AirStrike as i32;
    ingest.submit_report(request("", strike)).await.unwrap();
    assert_eq!(next_change(&mut resumed).await.position, 11);
    assert_eq!(next_change(&mut stream).await.position, 11);

    for (token, code) in [("nonsense", Code::InvalidArgument), ("r1.00ff.3", Code::OutOfRange)] {
        let status = query
            .subscribe(v1::SubscribeRequest {
                start: Some(Start::ResumeToken(token.into())),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), code, "{token}");
    }
    drop(stream);
    tokio::time::sleep(Duration::from_millis(50)).await;
    pair.stop().await;
}

#[tokio::test]
async fn the_zone_is_derived_from_the_point_and_disagreement_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let geometry = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/demarcation.example.geojson");
    let pair = Pair::start_with(truce_ingest::IngestConfig {
        data_dir: dir.path().to_owned(),
        demarcation: Some(geometry),
        ..Default::default()
    })
    .await;
    let mut ingest = pair.ingest_client().await;
    let mut query = pair.query_client().await;
    let cases = [
        // (latitude, longitude, stated zone, derived zone)
        (
            31.405,
            34.38,
            v1::Zone::IsraeliControlled,
            v1::Zone::HumanitarianCorridor,
        ),
        (31.315, 34.35, v1::Zone::AtLine, v1::Zone::AtLine),
        (
            31.40,
            34.33,
            v1::Zone::IsraeliControlled,
            v1::Zone::PalestinianControlled,
        ),
        (31.38, 34.43, v1::Zone::IsraeliControlled, v1::Zone::IsraeliControlled),
        (40.0, 40.0, v1::Zone::AtLine, v1::Zone::Unspecified),
    ];
    for (n, (latitude, longitude, stated, derived)) in cases.into_iter().enumerate() {
        let mut report = numbered_report(n as u32);
        let location = report.location.as_mut().unwrap();
        location.point = Some(v1::LatLng { latitude, longitude });
        location.zone = stated as i32;
        let accepted = ingest.submit_report(request("", report)).await.unwrap().into_inner();
        let stored = query
            .get_report(v1::GetReportRequest {
                report_id: accepted.report_id,
                min_position: accepted.position,
            })
            .await
            .unwrap()
            .into_inner()
            .report
            .unwrap();
        assert_eq!(stored.derived_zone, derived as i32, "{latitude},{longitude}");
        let disputed = derived != v1::Zone::Unspecified && derived != stated;
        assert_eq!(stored.zone_disputed, disputed, "{latitude},{longitude}");
    }
    // Both the stated and the derived zone are searchable.
    let listed = query
        .list_incidents(v1::ListIncidentsRequest {
            filter: "zone = HUMANITARIAN_CORRIDOR".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.incidents.len(), 1);
    pair.stop().await;
}
