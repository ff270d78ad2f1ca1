//! Identities and roles over real gRPC with real tokens: who may do what,
//! reporting only as one's own party, and revocation ending streams.

use std::time::Duration;

use tonic::{Code, Request};
use truce_auth::{PrincipalsFile, Role};
use truce_proto::v1::{self, subscribe_request::Start};
use truce_serve::auth::AuthMode;
use truce_tests::{Pair, crossing_report, request, stream};

fn with_token<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().expect("test setup"));
    request
}

struct Secure {
    pair: Pair,
    file: PrincipalsFile,
    admin: String,
    idf: String,
    observer: String,
    _dir: tempfile::TempDir,
}

async fn secure_pair() -> Secure {
    let dir = tempfile::tempdir().expect("test setup");
    let file = PrincipalsFile::new(dir.path().join("principals.json"));
    let pair = Pair::start_full(
        truce_ingest::IngestConfig {
            data_dir: dir.path().to_owned(),
            ..Default::default()
        },
        truce_query::QuerySettings::default(),
        AuthMode::Tokens(file.clone()),
    )
    .await;
    // The first start created the file and the admin's token.
    let mut ingest = pair.ingest_client().await;
    let _ = ingest.submit_report(request("", crossing_report())).await;
    let admin = std::fs::read_to_string(dir.path().join("admin.token"))
        .expect("test setup")
        .trim()
        .to_owned();
    let idf = file
        .add("idf-desk", &"idf".parse().expect("test setup"), &[Role::Reporter])
        .expect("test setup")
        .token;
    let observer = file
        .add("un-reader", &"un".parse().expect("test setup"), &[Role::Observer])
        .expect("test setup")
        .token;
    // The services notice the file within their reload poll.
    tokio::time::sleep(truce_serve::auth::RELOAD_POLL + Duration::from_millis(800)).await;
    Secure {
        pair,
        file,
        admin,
        idf,
        observer,
        _dir: dir,
    }
}

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
