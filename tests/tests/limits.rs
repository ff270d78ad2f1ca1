//! Limits against abuse, through real calls with real tokens: per-principal
//! write and read rates answered with RESOURCE_EXHAUSTED and a retry delay,
//! and callers' deadlines honoured.

use std::time::{Duration, Instant};

use tonic::Code;
use tonic_types::StatusExt;
use truce_auth::{PrincipalsFile, Role};
use truce_proto::v1;
use truce_serve::{
    auth::{Access, AuthMode},
    limits::{Rate, RateLimits},
};
use truce_tests::{Pair, numbered_report, request, secure::with_token};

struct Limited {
    pair: Pair,
    idf: String,
    hamas: String,
    _dir: tempfile::TempDir,
}

async fn limited(limits: RateLimits) -> Limited {
    let dir = tempfile::tempdir().expect("test setup");
    let file = PrincipalsFile::new(dir.path().join("principals.json"));
    let token = |name: &str, party: &str| {
        file.add(name, &party.parse().expect("party"), &[Role::Reporter])
            .expect("add")
            .token
    };
    let (idf, hamas) = (token("idf-desk", "idf"), token("hamas-desk", "hamas"));
    let pair = Pair::start_full(
        truce_ingest::IngestConfig {
            data_dir: dir.path().to_owned(),
            ..Default::default()
        },
        truce_query::QuerySettings::default(),
        Access {
            mode: AuthMode::Tokens(file),
            limits,
            tls: None,
            connections: Default::default(),
        },
    )
    .await;
    Limited {
        pair,
        idf,
        hamas,
        _dir: dir,
    }
}

fn as_party(party: &str, n: u32) -> v1::Report {
    v1::Report {
        reporting_party: party.into(),
        ..numbered_report(n)
    }
}

/// The retry delay and ErrorInfo reason of a rate-limit refusal.
fn retry_delay(status: &tonic::Status) -> Duration {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let details = status.get_error_details();
    assert_eq!(details.error_info().expect("ErrorInfo").reason, "RATE_LIMITED");
    details
        .retry_info()
        .expect("RetryInfo")
        .retry_delay
        .expect("a retry delay")
}

#[tokio::test]
async fn writes_beyond_a_principals_rate_are_refused_with_a_retry_delay() {
    let rate = Rate {
        per_second: 10,
        burst: 3,
    };
    let s = limited(RateLimits {
        writes: rate,
        reads: RateLimits::UNLIMITED.reads,
    })
    .await;
    let mut ingest = s.pair.ingest_client().await;
    for n in 0..3 {
        ingest
            .submit_report(with_token(&s.idf, request("", as_party("idf", n))))
            .await
            .expect("within the burst");
    }
    let refused = ingest
        .submit_report(with_token(&s.idf, request("over", as_party("idf", 3))))
        .await
        .expect_err("over the rate");
    let delay = retry_delay(&refused);
    assert!(
        delay > Duration::ZERO && delay <= Duration::from_millis(100),
        "{delay:?}"
    );
    // Another principal has its own allowance.
    let accepted = ingest
        .submit_report(with_token(&s.hamas, request("", as_party("hamas", 4))))
        .await
        .expect("hamas is not limited by the idf's use")
        .into_inner();
    assert_eq!(accepted.position, 4, "the refused report was not stored");
    // After the delay it named, the retry succeeds.
    tokio::time::sleep(delay).await;
    ingest
        .submit_report(with_token(&s.idf, request("over", as_party("idf", 3))))
        .await
        .expect("after the delay");

    // In the bulk stream each report is charged; those over the rate are
    // rejected one by one with the delay, and the stream goes on.
    let requests: Vec<v1::SubmitReportsRequest> = (10..20)
        .map(|n| v1::SubmitReportsRequest {
            request: Some(request("", as_party("idf", n))),
        })
        .collect();
    let mut results = ingest
        .submit_reports(with_token(&s.idf, tokio_stream::iter(requests)))
        .await
        .expect("bulk")
        .into_inner();
    let (mut accepted, mut limited) = (0, 0);
    while let Some(result) = results.message().await.expect("result") {
        match result.result.expect("a result") {
            v1::submit_reports_response::Result::Accepted(_) => accepted += 1,
            v1::submit_reports_response::Result::Rejected(rejected) => {
                assert_eq!(rejected.code, Code::ResourceExhausted as i32, "{rejected:?}");
                assert!(rejected.retry_delay.is_some(), "{rejected:?}");
                limited += 1;
            }
        }
    }
    assert_eq!(accepted + limited, 10);
    assert!(limited >= 5, "a burst of 10 against 3 tokens: {limited} limited");
    s.pair.stop().await;
}

#[tokio::test]
async fn reads_are_limited_and_deadlines_are_honoured() {
    let s = limited(RateLimits {
        writes: RateLimits::UNLIMITED.writes,
        reads: Rate {
            per_second: 1,
            burst: 2,
        },
    })
    .await;
    let mut query = s.pair.query_client().await;
    let list = || with_token(&s.idf, v1::ListIncidentsRequest::default());
    query.list_incidents(list()).await.expect("first");
    query.list_incidents(list()).await.expect("second");
    let refused = query.list_incidents(list()).await.expect_err("third");
    let delay = retry_delay(&refused);
    assert!(delay <= Duration::from_secs(1), "{delay:?}");
    // Another principal still reads.
    query
        .list_incidents(with_token(&s.hamas, v1::ListIncidentsRequest::default()))
        .await
        .expect("hamas reads");

    // A read waiting for a position that will not come in time ends at the
    // caller's deadline with DEADLINE_EXCEEDED, not after the server's own
    // 10 s wait.
    let mut waiting = with_token(
        &s.hamas,
        v1::GetIncidentRequest {
            incident_id: "inc-1".into(),
            min_position: 1_000,
        },
    );
    waiting.set_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let status = query
        .get_incident(waiting)
        .await
        .expect_err("position 1000 never comes");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().contains("before the deadline"), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    s.pair.stop().await;
}
