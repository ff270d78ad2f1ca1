//! The real `grpcurl` (provisioned by `tests/run`) against a real pair:
//! each port lists its own services through reflection and describes the
//! messages with no .proto files at hand, a call on the wrong port says
//! which port serves it, and a report submitted from the shell comes back
//! from a query.

use tokio::process::Command;
use truce_tests::Pair;

/// grpcurl's exit, stdout and stderr.
async fn run_grpcurl(args: &[&str]) -> (bool, String, String) {
    let output = Command::new("grpcurl")
        .args(args)
        .output()
        .await
        .expect("grpcurl is not on PATH: run the tests with tests/run, which provides it");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn grpcurl(args: &[&str]) -> String {
    let (ok, stdout, stderr) = run_grpcurl(args).await;
    assert!(ok, "grpcurl {args:?} failed: {stdout}{stderr}");
    stdout
}

#[tokio::test]
async fn each_port_lists_its_own_services_and_points_to_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let pair = Pair::start(dir.path()).await;
    let (ingest, query) = (pair.ingest.to_string(), pair.query.to_string());
    let listed = |text: String| -> Vec<String> { text.lines().map(str::to_owned).collect() };
    let shared = [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ];
    let mut on_ingest = listed(grpcurl(&["-plaintext", &ingest, "list"]).await);
    let mut on_query = listed(grpcurl(&["-plaintext", &query, "list"]).await);
    on_ingest.sort();
    on_query.sort();
    let expected = |own: &[&str]| {
        let mut all: Vec<String> = own.iter().chain(&shared).map(|s| (*s).to_owned()).collect();
        all.sort();
        all
    };
    assert_eq!(on_ingest, expected(&["truce.v1.IngestService", "truce.v1.LogService"]));
    assert_eq!(on_query, expected(&["truce.v1.QueryService"]));

    // A query sent to the ingest port, and a report to the query port.
    let (ok, _, wrong) = run_grpcurl(&["-plaintext", "-d", "{}", &ingest, "truce.v1.QueryService/ListIncidents"]).await;
    assert!(!ok);
    assert!(wrong.contains("Code: Unimplemented"), "{wrong}");
    assert!(
        wrong.contains(&format!(
            "truce.v1.QueryService is served on the query port, {query}, not on this ingest port"
        )),
        "{wrong}"
    );
    let (ok, _, wrong) = run_grpcurl(&["-plaintext", "-d", "{}", &query, "truce.v1.IngestService/SubmitReport"]).await;
    assert!(!ok);
    assert!(
        wrong.contains(&format!(
            "truce.v1.IngestService is served on the ingest port, {ingest}, not on this query port"
        )),
        "{wrong}"
    );
    pair.stop().await;
}

#[tokio::test]
async fn grpcurl_lists_describes_submits_and_queries() {
    let dir = tempfile::tempdir().unwrap();
    let pair = Pair::start(dir.path()).await;
    let (ingest, query) = (pair.ingest.to_string(), pair.query.to_string());
    pair.ingest_client().await;
    pair.query_client().await;

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
