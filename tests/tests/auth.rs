//! Identities and roles over real gRPC with real tokens: who may do what,
//! reporting only as one's own party, and revocation ending streams.

use std::time::Duration;

use tonic::Code;
use truce_auth::Role;
use truce_proto::v1::{self, subscribe_request::Start};
use truce_tests::{
    crossing_report, request,
    secure::{secure_pair, with_token},
    stream,
};

#[tokio::test]
async fn no_or_unknown_tokens_are_unauthenticated_and_reveal_nothing() {
    let s = secure_pair().await;
    let mut ingest = s.pair.ingest_client().await;
    let mut query = s.pair.query_client().await;
    let status = ingest.submit_report(request("", crossing_report())).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = ingest
        .submit_report(with_token("truce_forged", request("", crossing_report())))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    // An unknown incident without a token is UNAUTHENTICATED, not NOT_FOUND.
    let status = query
        .get_incident(v1::GetIncidentRequest {
            incident_id: "inc-404".into(),
            min_position: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = query
        .subscribe(stream::request("", Start::FromNow(true)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let mut log = v1::log_service_client::LogServiceClient::connect(format!("http://{}", s.pair.ingest))
        .await
        .unwrap();
    let status = log.read_log(v1::ReadLogRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    // Reflection and health stay open.
    let listed = query
        .list_incidents(with_token(&s.admin, v1::ListIncidentsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.incidents.is_empty(), "nothing was stored by the refused calls");
    s.pair.stop().await;
}

#[tokio::test]
async fn a_reporter_speaks_only_for_its_own_party_and_readers_cannot_write() {
    let s = secure_pair().await;
    let mut ingest = s.pair.ingest_client().await;
    let mut query = s.pair.query_client().await;

    let mut as_hamas = crossing_report();
    as_hamas.reporting_party = "hamas".into();
    let status = ingest
        .submit_report(with_token(&s.idf, request("", as_hamas)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    // No party named: the identity's party is recorded.
    let mut unnamed = crossing_report();
    unnamed.reporting_party.clear();
    let accepted = ingest
        .submit_report(with_token(&s.idf, request("k1", unnamed)))
        .await
        .unwrap()
        .into_inner();
    let stored = query
        .get_report(with_token(
            &s.observer,
            v1::GetReportRequest {
                report_id: accepted.report_id,
                min_position: accepted.position,
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .report
        .unwrap();
    assert_eq!(stored.report.unwrap().reporting_party, "idf");

    for token in [&s.observer, &s.admin] {
        let status = ingest
            .submit_report(with_token(token, request("", crossing_report())))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
    }
    // The bulk stream applies the same rules, report by report.
    let mut other = crossing_report();
    other.reporting_party = "hamas".into();
    let requests = vec![
        v1::SubmitReportsRequest {
            request: Some(request("", crossing_report())),
        },
        v1::SubmitReportsRequest {
            request: Some(request("", other)),
        },
    ];
    let mut results = ingest
        .submit_reports(with_token(&s.idf, tokio_stream::iter(requests)))
        .await
        .unwrap()
        .into_inner();
    let first = results.message().await.unwrap().unwrap().result.unwrap();
    let second = results.message().await.unwrap().unwrap().result.unwrap();
    assert!(matches!(first, v1::submit_reports_response::Result::Accepted(_)));
    let v1::submit_reports_response::Result::Rejected(rejected) = second else {
        panic!("reporting as another party must be rejected");
    };
    assert_eq!(rejected.code, Code::PermissionDenied as i32);
    s.pair.stop().await;
}

#[tokio::test]
async fn removing_a_principal_ends_its_streams_and_refuses_its_token() {
    let s = secure_pair().await;
    let mut query = s.pair.query_client().await;
    let mut changes = query
        .subscribe(with_token(&s.observer, stream::request("", Start::FromNow(true))))
        .await
        .unwrap()
        .into_inner();
    stream::next(&mut changes).await.unwrap();
    // Rotate: rewrite the file without the observer.
    let text = std::fs::read_to_string(s.file.path()).unwrap();
    let mut document: serde_json::Value = serde_json::from_str(&text).unwrap();
    document["principals"]
        .as_array_mut()
        .unwrap()
        .retain(|p| p["name"] != "un-reader");
    std::fs::write(s.file.path(), serde_json::to_vec_pretty(&document).unwrap()).unwrap();
    let status = loop {
        match stream::next(&mut changes).await {
            Ok(_) => continue,
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = query
        .list_incidents(with_token(&s.observer, v1::ListIncidentsRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    // Others are unaffected.
    query
        .list_incidents(with_token(&s.admin, v1::ListIncidentsRequest::default()))
        .await
        .unwrap();
    s.pair.stop().await;
}

#[tokio::test]
async fn a_breach_is_confirmed_by_a_quorum_of_distinct_mediators_and_kept_in_history() {
    let s = secure_pair().await;
    let monitor = |name: &str, party: &str| {
        s.file
            .add(name, &party.parse().unwrap(), &[Role::Monitor])
            .unwrap()
            .token
    };
    let (egypt, qatar, idf_monitor) = (
        monitor("egypt-1", "egypt"),
        monitor("qatar-1", "qatar"),
        monitor("idf-liaison", "idf"),
    );
    tokio::time::sleep(truce_serve::auth::RELOAD_POLL + Duration::from_millis(800)).await;
    let mut ingest = s.pair.ingest_client().await;
    let mut query = s.pair.query_client().await;
    let opened = ingest
        .submit_report(with_token(&s.idf, request("", crossing_report())))
        .await
        .unwrap()
        .into_inner();
    let mut confirmed = query
        .subscribe(with_token(
            &s.observer,
            stream::request("status = CONFIRMED_BREACH", Start::FromNow(true)),
        ))
        .await
        .unwrap()
        .into_inner();
    stream::next(&mut confirmed).await.unwrap();

    let review = |status: v1::IncidentStatus, responsible: &str| v1::ReviewIncidentRequest {
        incident_id: opened.incident_id.clone(),
        status: status as i32,
        finding: "Footage and both sides' statements agree the gunman crossed via the corridor.".into(),
        responsible_party: responsible.into(),
    };
    let confirm = || review(v1::IncidentStatus::ConfirmedBreach, "hamas");

    // Who may not rule: a reporter, and a monitor of a party involved.
    for token in [&s.idf, &idf_monitor, &s.observer] {
        let status = ingest.review_incident(with_token(token, confirm())).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
    }
    // Invalid rulings name the field.
    let status = ingest
        .review_incident(with_token(&egypt, review(v1::IncidentStatus::ConfirmedBreach, "")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(truce_tests::violations(&status)[0].0, "responsible_party");

    let first = ingest
        .review_incident(with_token(&egypt, confirm()))
        .await
        .unwrap()
        .into_inner();
    let after_first = first.incident.unwrap();
    assert_eq!(after_first.status, v1::IncidentStatus::UnderReview as i32);
    assert_eq!(after_first.confirmations.len(), 1);
    let again = ingest.review_incident(with_token(&egypt, confirm())).await.unwrap_err();
    assert_eq!(
        again.code(),
        Code::FailedPrecondition,
        "one confirmation per mediator party"
    );
    let second = ingest
        .review_incident(with_token(&qatar, confirm()))
        .await
        .unwrap()
        .into_inner();
    let after_second = second.incident.unwrap();
    assert_eq!(after_second.status, v1::IncidentStatus::ConfirmedBreach as i32);
    assert_eq!(after_second.found_responsible, "hamas");

    // The subscriber sees the incident enter its filter with the ruling.
    let change = loop {
        if let v1::subscribe_response::Kind::Change(change) = stream::next(&mut confirmed).await.unwrap() {
            break change;
        }
    };
    assert_eq!(change.kind, v1::ChangeKind::Reviewed as i32);
    assert_eq!(change.review.unwrap().reviewer_party, "qatar");

    let incident = query
        .get_incident(with_token(
            &s.observer,
            v1::GetIncidentRequest {
                incident_id: opened.incident_id.clone(),
                min_position: second.position,
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .incident
        .unwrap();
    let history: Vec<(String, i32)> = incident
        .reviews
        .iter()
        .map(|r| (r.reviewer.clone(), r.status))
        .collect();
    let confirmed_status = v1::IncidentStatus::ConfirmedBreach as i32;
    assert_eq!(
        history,
        [
            ("egypt-1".into(), confirmed_status),
            ("qatar-1".into(), confirmed_status)
        ]
    );
    s.pair.stop().await;
}

/// `key`'s signature over submitting `report` under `client_report_id`.
fn sign(client_report_id: &str, report: &v1::Report, key: &ed25519_dalek::SigningKey) -> Vec<u8> {
    truce_tests::signing::sign(key, &truce_tests::signing::submit(client_report_id, report))
}

fn signed(key: &str, report: v1::Report, signature: Vec<u8>) -> v1::SubmitReportRequest {
    v1::SubmitReportRequest {
        signature,
        ..request(key, report)
    }
}

/// A party registers a key with `truce party add-key`; its signed report is
/// stored with the signature, which anyone can check later; a forged or
/// wrong-party signature is refused and stores nothing; an operator who
/// rewrites a signed report (and the whole chain after it) is caught by
/// `truce verify`.
#[tokio::test]
async fn signed_reports_are_verified_kept_and_forgeries_refused() {
    let s = secure_pair().await;
    let principals = s.dir.path().join("principals.json");
    let secret_path = s.dir.path().join("idf.signing-key");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_truce-testbed"))
        .args(["party", "add-key", "--party", "idf", "--key-out"])
        .arg(&secret_path)
        .arg("--principals")
        .arg(&principals)
        .output()
        .await
        .expect("run truce party add-key");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let public_key = String::from_utf8(output.stdout).expect("utf-8").trim().to_owned();
    let secret: [u8; 32] = hex::decode(std::fs::read_to_string(&secret_path).expect("secret").trim())
        .expect("hex")
        .try_into()
        .expect("32 bytes");
    let idf_key = ed25519_dalek::SigningKey::from_bytes(&secret);
    assert_eq!(hex::encode(idf_key.verifying_key().to_bytes()), public_key);
    let hamas_key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    s.file
        .add_party_key(
            &"hamas".parse().expect("party"),
            &hex::encode(hamas_key.verifying_key().to_bytes()),
        )
        .expect("register");
    tokio::time::sleep(truce_serve::auth::RELOAD_POLL + Duration::from_millis(800)).await;

    let mut ingest = s.pair.ingest_client().await;
    let mut query = s.pair.query_client().await;
    let mut report = crossing_report();
    report.reporting_party = "idf".into();
    let accepted = ingest
        .submit_report(with_token(
            &s.idf,
            signed("signed-1", report.clone(), sign("signed-1", &report, &idf_key)),
        ))
        .await
        .expect("a good signature is accepted")
        .into_inner();
    let stored = query
        .get_report(with_token(
            &s.observer,
            v1::GetReportRequest {
                report_id: accepted.report_id.clone(),
                min_position: accepted.position,
            },
        ))
        .await
        .expect("get")
        .into_inner()
        .report
        .expect("report");
    let kept = stored.signature.expect("the signature is kept");
    assert_eq!(hex::encode(&kept.public_key), public_key);
    assert_eq!(kept.signature, sign("signed-1", &report, &idf_key));

    // Forgeries: altered after signing, signed by another party's key,
    // a truncated signature; each INVALID_ARGUMENT on `signature`.
    let mut altered = report.clone();
    altered.summary.push_str(" (edited)");
    let forgeries = [
        (altered, sign("forged-0", &report, &idf_key), "does not verify"),
        (report.clone(), sign("forged-1", &report, &hamas_key), "does not verify"),
        (report.clone(), vec![1; 63], "64-byte"),
    ];
    for (i, (body, signature, rule)) in forgeries.into_iter().enumerate() {
        let status = ingest
            .submit_report(with_token(&s.idf, signed(&format!("forged-{i}"), body, signature)))
            .await
            .expect_err("a forgery is refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        let violations = truce_tests::violations(&status);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].0, "signature");
        assert!(violations[0].1.contains(rule), "{violations:?}");
    }
    // A party without a key cannot sign.
    let mut as_un = crossing_report();
    as_un.reporting_party = "un".into();
    let un_reporter = s
        .file
        .add("un-desk", &"un".parse().expect("party"), &[Role::Reporter])
        .expect("add")
        .token;
    tokio::time::sleep(truce_serve::auth::RELOAD_POLL + Duration::from_millis(800)).await;
    let status = ingest
        .submit_report(with_token(
            &un_reporter,
            signed("un-1", as_un.clone(), sign("un-1", &as_un, &idf_key)),
        ))
        .await
        .expect_err("no key registered");
    assert!(status.message().contains("no registered signing key"), "{status:?}");

    // Nothing refused was stored: the log ends at the signed report.
    let mut log = v1::log_service_client::LogServiceClient::new(
        tonic::transport::Channel::from_shared(format!("http://{}", s.pair.ingest))
            .expect("url")
            .connect()
            .await
            .expect("connect"),
    );
    let head = log
        .get_log_head(with_token(&s.observer, v1::GetLogHeadRequest {}))
        .await
        .expect("head")
        .into_inner();
    assert_eq!(head.position, accepted.position);
    s.pair.stop().await;

    let verify = |extra: &[&str]| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_truce-testbed"));
        command
            .args(["verify", "--principals"])
            .arg(&principals)
            .arg("--data-dir")
            .arg(s.dir.path())
            .args(extra);
        async move { command.output().await.expect("run truce verify") }
    };
    let output = verify(&[]).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        String::from_utf8_lossy(&output.stdout)
            .contains("1 signatures hold, each bound to its act, party, report and replaced version")
    );

    // The operator rewrites the signed report's summary and recomputes the
    // chain from there: the links hold, the party's signature does not.
    let conn = rusqlite::Connection::open(s.dir.path().join("log.sqlite3")).expect("open");
    let rows: Vec<(i64, Vec<u8>)> = conn
        .prepare("SELECT position, payload FROM entries ORDER BY position")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    let mut previous = truce_log::GENESIS_HASH;
    for (position, mut payload) in rows {
        if position as u64 == accepted.position {
            use prost::Message;
            let mut event = v1::LogEvent::decode(payload.as_slice()).expect("decode");
            let Some(v1::log_event::Body::ReportRecorded(recorded)) = event.body.as_mut() else {
                panic!("not a report");
            };
            let report = recorded
                .report
                .as_mut()
                .and_then(|r| r.report.as_mut())
                .expect("report");
            report.summary = "nothing happened".into();
            payload = event.encode_to_vec();
        }
        let hash = truce_log::chain_hash(&previous, &payload);
        conn.execute(
            "UPDATE entries SET payload = ?1, hash = ?2 WHERE position = ?3",
            rusqlite::params![payload, hash.to_vec(), position],
        )
        .expect("rewrite");
        previous = hash;
    }
    drop(conn);
    let output = verify(&[]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&format!(
            "broken at position {}: the signature of party idf does not hold",
            accepted.position
        )),
        "{stderr}"
    );
}
