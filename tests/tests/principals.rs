//! Managing principals while the services run, over real gRPC on loopback:
//! a principal added is let in on its very first call, a rotated-out or
//! revoked token is refused (and the streams it opened end), tokens handed
//! over in files are readable only by their owner, listings hold no
//! secret, unknown tokens never make a service re-read an unchanged file,
//! a file without principals is refused at start, and each role may call
//! exactly what the README's roles table says.

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::Output,
    time::{Duration, Instant},
};

use tonic::{Code, Status};
use truce_auth::{PrincipalsFile, Role, token_hash};
use truce_proto::v1::{self, subscribe_request::Start};
use truce_serve::auth::{AuthMode, Authenticator, RELOAD_POLL};
use truce_tests::{Pair, numbered_report, request, secure::with_token, stream};

/// Services on tokens, started on a fresh principals file (which creates
/// it with an admin).
struct Services {
    pair: Pair,
    file: PrincipalsFile,
    admin: String,
    dir: tempfile::TempDir,
}

impl Services {
    async fn start() -> Services {
        let dir = tempfile::tempdir().expect("test setup");
        let (pair, file, admin) = truce_tests::secure::on_tokens(
            dir.path(),
            truce_ingest::IngestConfig::default(),
            truce_query::QuerySettings::default(),
        )
        .await;
        Services { pair, file, admin, dir }
    }

    /// Runs the `truce` command line on this principals file.
    async fn truce(&self, args: &[&str]) -> Output {
        truce(
            args.iter()
                .map(OsStr::new)
                .chain([OsStr::new("--principals"), self.file.path().as_os_str()]),
        )
        .await
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A read as `token`.
    async fn list(&self, token: &str) -> Result<(), Status> {
        let mut query = self.pair.query_client().await;
        query
            .list_incidents(with_token(token, v1::ListIncidentsRequest::default()))
            .await
            .map(drop)
    }

    /// A write as `token`.
    async fn submit(&self, token: &str, n: u32) -> Result<v1::SubmitReportResponse, Status> {
        let mut ingest = self.pair.ingest_client().await;
        let mut report = numbered_report(n);
        report.reporting_party.clear();
        ingest
            .submit_report(with_token(token, request("", report)))
            .await
            .map(tonic::Response::into_inner)
    }
}

async fn truce<'a>(args: impl IntoIterator<Item = &'a OsStr>) -> Output {
    tokio::time::timeout(
        truce_tests::PATIENCE,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_truce-testbed"))
            .args(args)
            .env_remove("TRUCE_PRINCIPALS")
            .env_remove("TRUCE_DATA_DIR")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the truce command did not finish in time")
    .expect("run the truce command")
}

fn succeeded(output: &Output) -> (String, String) {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    (stdout, stderr)
}

fn failed(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "expected a failure; stderr: {stderr}");
    assert!(
        output.stdout.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&output.stdout)
    );
    stderr
}

fn read_token(path: &Path) -> String {
    std::fs::read_to_string(path).expect("token file").trim().to_owned()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

/// How long `token` went on being accepted: polls until it is refused
/// (UNAUTHENTICATED), failing the test if that takes unreasonably long.
async fn refused_within(services: &Services, token: &str) -> Duration {
    let since = Instant::now();
    loop {
        match services.list(token).await {
            Ok(()) => {
                assert!(
                    since.elapsed() < RELOAD_POLL * 4 + Duration::from_secs(2),
                    "the token is still accepted"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(status) => {
                assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
                return since.elapsed();
            }
        }
    }
}

/// The status a subscription ends with, reading past its messages (it must
/// end within the suite's patience, heartbeats or not).
async fn end_of(changes: &mut stream::Changes) -> Status {
    let end = async {
        loop {
            if let Err(status) = stream::next(changes).await {
                return status;
            }
        }
    };
    tokio::time::timeout(truce_tests::PATIENCE, end)
        .await
        .expect("the subscription went on")
}

#[tokio::test]
async fn a_principal_added_while_the_services_run_is_accepted_on_its_first_call() {
    let s = Services::start().await;

    // The command line, with the token handed over in a file.
    let token_path = s.path("idf.token");
    let output = s
        .truce(&[
            "principal",
            "add",
            "idf-desk",
            "--party",
            "idf",
            "--role",
            "reporter",
            "--token-out",
            token_path.to_str().expect("utf-8"),
        ])
        .await;
    let (stdout, stderr) = succeeded(&output);
    let token = read_token(&token_path);
    assert!(token.starts_with("truce_"), "{token}");
    assert!(stdout.is_empty(), "nothing on stdout with --token-out: {stdout:?}");
    assert!(!stderr.contains(&token), "{stderr}");
    assert!(stderr.contains("accept it at once"), "{stderr}");
    #[cfg(unix)]
    assert_eq!(mode(&token_path), 0o600);
    // No sleep: the very first call is let in.
    let accepted = s.submit(&token, 1).await.expect("accepted on its first call");
    assert!(accepted.position > 0);

    // The library function the command line uses, read at once too.
    let un = s
        .file
        .add("un-reader", &"un".parse().expect("party"), &[Role::Observer])
        .expect("add")
        .token;
    s.list(&un).await.expect("accepted on its first call");

    // An existing --token-out file is neither replaced nor a principal
    // added with a token no one could read.
    std::fs::write(s.path("taken.token"), "keep me\n").expect("write");
    let stderr = failed(
        &s.truce(&[
            "principal",
            "add",
            "hamas-desk",
            "--party",
            "hamas",
            "--role",
            "reporter",
            "--token-out",
            s.path("taken.token").to_str().expect("utf-8"),
        ])
        .await,
    );
    assert!(stderr.contains("exists"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(s.path("taken.token")).expect("read"),
        "keep me\n"
    );
    assert!(s.file.list().expect("list").iter().all(|p| p.name != "hamas-desk"));

    // Without --token-out the token is the only thing on stdout.
    let (stdout, _) = succeeded(
        &s.truce(&["principal", "add", "egypt-1", "--party", "egypt", "--role", "monitor"])
            .await,
    );
    let printed = stdout.trim();
    assert_eq!(stdout, format!("{printed}\n"));
    s.list(printed).await.expect("the printed token works at once");
    s.pair.stop().await;
}

#[tokio::test]
async fn a_rotated_out_token_is_refused_and_its_stream_ends() {
    let s = Services::start().await;
    let first_path = s.path("un-1.token");
    succeeded(
        &s.truce(&[
            "principal",
            "add",
            "un-reader",
            "--party",
            "un",
            "--role",
            "observer",
            "--token-out",
            first_path.to_str().expect("utf-8"),
        ])
        .await,
    );
    let first = read_token(&first_path);
    let mut query = s.pair.query_client().await;
    let mut changes = query
        .subscribe(with_token(&first, stream::request("", Start::FromNow(true))))
        .await
        .expect("subscribe")
        .into_inner();
    stream::next(&mut changes).await.expect("subscribed");

    let second_path = s.path("un-2.token");
    let (stdout, stderr) = succeeded(
        &s.truce(&[
            "principal",
            "rotate",
            "un-reader",
            "--token-out",
            second_path.to_str().expect("utf-8"),
        ])
        .await,
    );
    assert!(stdout.is_empty(), "{stdout:?}");
    assert!(stderr.contains("refuse the old one"), "{stderr}");
    #[cfg(unix)]
    assert_eq!(mode(&second_path), 0o600);
    let second = read_token(&second_path);
    assert_ne!(first, second);
    s.list(&second).await.expect("the new token works on its first call");
    // That call made the service read the file: the old token is gone.
    let status = s.list(&first).await.expect_err("the old token is refused");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(end_of(&mut changes).await.code(), Code::Unauthenticated);

    // An attacker holding the old token who calls before anyone uses the
    // new one is refused once the services next check the file.
    let (stdout, _) = succeeded(&s.truce(&["principal", "rotate", "un-reader"]).await);
    let third = stdout.trim().to_owned();
    let took = refused_within(&s, &second).await;
    eprintln!("a rotated-out token was refused {took:?} after the rotation");
    s.list(&third).await.expect("the newest token works");

    // A principal with a certificate only has no token to rotate; unknown
    // names are named.
    succeeded(
        &s.truce(&[
            "principal",
            "add",
            "un-cert",
            "--party",
            "un",
            "--role",
            "observer",
            "--certificate-subject",
            "CN=un-cert",
        ])
        .await,
    );
    let stderr = failed(&s.truce(&["principal", "rotate", "un-cert"]).await);
    assert!(stderr.contains("no token to rotate"), "{stderr}");
    let stderr = failed(&s.truce(&["principal", "rotate", "nobody"]).await);
    assert!(stderr.contains(r#"no principal is named "nobody""#), "{stderr}");
    s.pair.stop().await;
}

#[tokio::test]
async fn a_revoked_principal_is_refused_and_its_stream_ends() {
    let s = Services::start().await;
    let idf = s
        .file
        .add("idf-desk", &"idf".parse().expect("party"), &[Role::Reporter])
        .expect("add")
        .token;
    let un = s
        .file
        .add("un-reader", &"un".parse().expect("party"), &[Role::Observer])
        .expect("add")
        .token;
    s.submit(&idf, 1).await.expect("accepted");
    let mut query = s.pair.query_client().await;
    let mut changes = query
        .subscribe(with_token(&un, stream::request("", Start::FromBeginning(true))))
        .await
        .expect("subscribe")
        .into_inner();
    stream::next(&mut changes).await.expect("subscribed");

    for name in ["idf-desk", "un-reader"] {
        let (stdout, stderr) = succeeded(&s.truce(&["principal", "revoke", name]).await);
        assert!(stdout.is_empty(), "{stdout:?}");
        assert!(stderr.contains("refuse its credentials"), "{stderr}");
    }
    // The attacker's side: the revoked tokens stop working, for writes too.
    let took = refused_within(&s, &un).await;
    eprintln!("a revoked token was refused {took:?} after the revocation");
    let status = s.submit(&idf, 2).await.expect_err("a revoked reporter cannot write");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(end_of(&mut changes).await.code(), Code::Unauthenticated);
    s.list(&s.admin).await.expect("others are unaffected");

    let stderr = failed(&s.truce(&["principal", "revoke", "un-reader"]).await);
    assert!(stderr.contains(r#"no principal is named "un-reader""#), "{stderr}");
    // The last principal stays: the services would not start without one.
    let stderr = failed(&s.truce(&["principal", "revoke", "admin"]).await);
    assert!(stderr.contains("only principal"), "{stderr}");
    s.list(&s.admin).await.expect("the admin is kept");
    s.pair.stop().await;
}

#[tokio::test]
async fn the_listing_says_who_and_how_but_holds_no_secret() {
    let dir = tempfile::tempdir().expect("test setup");
    let file = PrincipalsFile::new(dir.path().join("principals.json"));
    let party = |p: &str| p.parse().expect("party");
    let desk = file
        .add("idf-desk", &party("idf"), &[Role::Reporter])
        .expect("add")
        .token;
    let egypt = file
        .add("egypt-1", &party("egypt"), &[Role::Monitor, Role::Reporter])
        .expect("add")
        .token;
    file.add_certificate("un-reader", &party("un"), &[Role::Observer], "CN=un-reader")
        .expect("add");
    let principals = || [OsStr::new("--principals"), file.path().as_os_str()];

    let (table, _) = succeeded(
        &truce(
            [OsStr::new("principal"), OsStr::new("list")]
                .into_iter()
                .chain(principals()),
        )
        .await,
    );
    let lines: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        lines,
        [
            vec!["NAME", "PARTY", "ROLES", "AUTHENTICATES", "BY"],
            vec!["idf-desk", "idf", "reporter", "token"],
            vec!["egypt-1", "egypt", "monitor,reporter", "token"],
            vec!["un-reader", "un", "observer", "certificate", "CN=un-reader"],
        ],
        "{table}"
    );

    let (json, _) = succeeded(
        &truce(
            ["principal", "list", "--output", "json"]
                .map(OsStr::new)
                .into_iter()
                .chain(principals()),
        )
        .await,
    );
    let listed: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(listed[1]["name"], "egypt-1");
    assert_eq!(listed[1]["roles"], serde_json::json!(["monitor", "reporter"]));
    assert_eq!(listed[1]["token"], true);
    assert_eq!(listed[2]["certificate_subject"], "CN=un-reader");

    for text in [&table, &json] {
        for token in [&desk, &egypt] {
            assert!(
                !text.contains(token.as_str()) && !text.contains(&token_hash(token)),
                "{text}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tokens_cost_a_stat_and_never_a_read_of_an_unchanged_file() {
    let s = Services::start().await;
    let flood = |n: usize| {
        let ingest = s.pair.ingest;
        let query = s.pair.query;
        async move {
            let mut tasks = Vec::new();
            for task in 0..8 {
                tasks.push(tokio::spawn(async move {
                    let mut ingest = truce_tests::ingest_client(ingest).await;
                    let mut query = truce_tests::query_client(query).await;
                    for i in 0..n / 8 {
                        let forged = format!("truce_{:064x}", task * 1_000_000 + i);
                        let status = if i % 2 == 0 {
                            query
                                .list_incidents(with_token(&forged, v1::ListIncidentsRequest::default()))
                                .await
                                .map(drop)
                        } else {
                            ingest
                                .submit_report(with_token(&forged, request("", numbered_report(1))))
                                .await
                                .map(drop)
                        }
                        .expect_err("a forged token is refused");
                        assert_eq!(status.code(), Code::Unauthenticated);
                    }
                }));
            }
            for task in tasks {
                task.await.expect("flood task");
            }
        }
    };

    let before = s.file.reads();
    flood(800).await;
    assert_eq!(s.file.reads(), before, "an unchanged file is never read again");

    // A change is read once, by whichever caller or poll sees it first,
    // however many unknown tokens arrive at once.
    let added = s
        .file
        .add("un-reader", &"un".parse().expect("party"), &[Role::Observer])
        .expect("add");
    let after_add = s.file.reads();
    flood(400).await;
    s.list(&added.token).await.expect("the new principal is let in");
    assert_eq!(s.file.reads(), after_add + 1, "one read of the changed file");

    // A file that fails to load keeps the principals in force, and is read
    // once, not once per unknown token.
    let broken = s.path("broken.json");
    std::fs::write(&broken, "{ not json").expect("write");
    std::fs::rename(&broken, s.file.path()).expect("replace");
    let after_break = s.file.reads();
    flood(400).await;
    s.list(&added.token)
        .await
        .expect("the previous principals stay in force");
    s.list(&s.admin).await.expect("the previous principals stay in force");
    assert_eq!(s.file.reads(), after_break + 1, "the broken file is read once");
    tokio::time::sleep(RELOAD_POLL * 2).await;
    assert_eq!(s.file.reads(), after_break + 1, "polling does not read it again");
    s.pair.stop().await;
}

#[tokio::test]
async fn a_principals_file_without_principals_is_refused_at_start() {
    for contents in ["", "{\"principals\": []}\n"] {
        let dir = tempfile::tempdir().expect("test setup");
        let path = dir.path().join("principals.json");
        std::fs::write(&path, contents).expect("write");
        let error = Authenticator::start(AuthMode::Tokens(PrincipalsFile::new(&path)))
            .expect_err("no one could call")
            .to_string();
        assert!(error.contains("lists no principals, so no one could call"), "{error}");
        assert!(error.contains("truce principal add"), "{error}");

        let output = truce(
            [
                "up",
                "--ingest-listen",
                "127.0.0.1:0",
                "--query-listen",
                "127.0.0.1:0",
                "--data-dir",
            ]
            .map(OsStr::new)
            .into_iter()
            .chain([dir.path().as_os_str(), OsStr::new("--principals"), path.as_os_str()]),
        )
        .await;
        let stderr = failed(&output);
        assert!(stderr.contains("lists no principals, so no one could call"), "{stderr}");
        assert!(!dir.path().join("admin.token").exists(), "no admin is made up");
    }
}

/// Which roles may make each call: the README's roles table.
const ROLES_TABLE: &[(&str, &[Role])] = &[
    ("SubmitReport", &[Role::Reporter, Role::Monitor]),
    ("SubmitReports", &[Role::Reporter, Role::Monitor]),
    ("AmendReport", &[Role::Reporter, Role::Monitor]),
    ("RetractReport", &[Role::Reporter, Role::Monitor]),
    ("ReviewIncident", &[Role::Monitor]),
    ("GetIncident", &Role::ALL),
    ("GetReport", &Role::ALL),
    ("ListIncidents", &Role::ALL),
    ("Summarize", &Role::ALL),
    ("Subscribe", &Role::ALL),
    ("ReadLog", &Role::ALL),
    ("GetLogHead", &Role::ALL),
];

/// Each role, over real gRPC, makes every call: what the table allows
/// succeeds, the rest is PERMISSION_DENIED.
#[tokio::test]
async fn each_role_may_make_exactly_the_calls_of_the_roles_table() {
    let s = Services::start().await;
    let party = |p: &str| p.parse().expect("party");
    let add = |name: &str, p: &str, role: Role| s.file.add(name, &party(p), &[role]).expect("add").token;
    let tokens = [
        (Role::Reporter, add("idf-desk", "idf", Role::Reporter)),
        (Role::Monitor, add("egypt-1", "egypt", Role::Monitor)),
        (Role::Observer, add("un-reader", "un", Role::Observer)),
        (Role::Admin, s.admin.clone()),
    ];
    // An incident of the reporter's, which the monitor's party is not
    // involved in.
    let opened = s.submit(&tokens[0].1, 1).await.expect("setup");
    let mut ingest = s.pair.ingest_client().await;
    let mut query = s.pair.query_client().await;
    let mut log = v1::log_service_client::LogServiceClient::new(
        tonic::transport::Channel::from_shared(format!("http://{}", s.pair.ingest))
            .expect("url")
            .connect()
            .await
            .expect("connect"),
    );

    for (n, (role, token)) in (10u32..).step_by(10).zip(&tokens) {
        // Reports that name no party: each writer's own is filled in.
        let report = |n| {
            let mut report = numbered_report(n);
            report.reporting_party.clear();
            report
        };
        let may = |call: &str| {
            ROLES_TABLE
                .iter()
                .find(|(c, _)| *c == call)
                .is_some_and(|(_, roles)| roles.contains(role))
        };
        // A writer revises its own reports; others try the reporter's.
        let mut own = opened.report_id.clone();
        let mut results: Vec<(&str, Result<(), Status>)> = Vec::new();

        let submitted = ingest.submit_report(with_token(token, request("", report(n)))).await;
        if let Ok(accepted) = &submitted {
            own = accepted.get_ref().report_id.clone();
        }
        results.push(("SubmitReport", submitted.map(drop)));

        let bulk = ingest
            .submit_reports(with_token(
                token,
                tokio_stream::iter([v1::SubmitReportsRequest {
                    request: Some(request("", report(n + 1))),
                }]),
            ))
            .await;
        let bulk = match bulk {
            Ok(results) => {
                let mut results = results.into_inner();
                match results.message().await.expect("a result").and_then(|r| r.result) {
                    Some(v1::submit_reports_response::Result::Accepted(_)) => Ok(()),
                    other => panic!("{role}: the bulk report was not accepted: {other:?}"),
                }
            }
            Err(status) => Err(status),
        };
        results.push(("SubmitReports", bulk));

        let mut amended = report(n);
        amended.summary.push_str(" (amended)");
        let amend = ingest
            .amend_report(with_token(
                token,
                v1::AmendReportRequest {
                    report_id: own.clone(),
                    report: Some(amended),
                    reason: "a better summary".into(),
                    signature: Vec::new(),
                    ..Default::default()
                },
            ))
            .await;
        results.push(("AmendReport", amend.map(drop)));
        let retract = ingest
            .retract_report(with_token(
                token,
                v1::RetractReportRequest {
                    report_id: own.clone(),
                    reason: "withdrawn".into(),
                    ..Default::default()
                },
            ))
            .await;
        results.push(("RetractReport", retract.map(drop)));
        let review = ingest
            .review_incident(with_token(
                token,
                v1::ReviewIncidentRequest {
                    incident_id: opened.incident_id.clone(),
                    status: v1::IncidentStatus::UnderReview as i32,
                    finding: "Under review by the mediators.".into(),
                    responsible_party: String::new(),
                },
            ))
            .await;
        results.push(("ReviewIncident", review.map(drop)));

        let incident = query
            .get_incident(with_token(
                token,
                v1::GetIncidentRequest {
                    incident_id: opened.incident_id.clone(),
                    // A query service following JetStream may not have
                    // applied the setup report yet.
                    min_position: opened.position,
                },
            ))
            .await;
        results.push(("GetIncident", incident.map(drop)));
        let got = query
            .get_report(with_token(
                token,
                v1::GetReportRequest {
                    report_id: opened.report_id.clone(),
                    min_position: opened.position,
                },
            ))
            .await;
        results.push(("GetReport", got.map(drop)));
        let listed = query
            .list_incidents(with_token(token, v1::ListIncidentsRequest::default()))
            .await;
        results.push(("ListIncidents", listed.map(drop)));
        let summarized = query
            .summarize(with_token(token, v1::SummarizeRequest::default()))
            .await;
        results.push(("Summarize", summarized.map(drop)));
        let subscribed = match query
            .subscribe(with_token(token, stream::request("", Start::FromNow(true))))
            .await
        {
            Ok(changes) => stream::next(&mut changes.into_inner()).await.map(drop),
            Err(status) => Err(status),
        };
        results.push(("Subscribe", subscribed));
        let read = match log
            .read_log(with_token(
                token,
                v1::ReadLogRequest {
                    from_position: 1,
                    incarnation: String::new(),
                    until_position: 1,
                },
            ))
            .await
        {
            Ok(entries) => entries.into_inner().message().await.map(drop),
            Err(status) => Err(status),
        };
        results.push(("ReadLog", read));
        let head = log.get_log_head(with_token(token, v1::GetLogHeadRequest {})).await;
        results.push(("GetLogHead", head.map(drop)));

        assert_eq!(
            results.iter().map(|(call, _)| *call).collect::<Vec<_>>(),
            ROLES_TABLE.iter().map(|(call, _)| *call).collect::<Vec<_>>(),
            "every call of the table is made"
        );
        for (call, result) in results {
            match result {
                Ok(()) => assert!(may(call), "{role} may not {call}, yet it succeeded"),
                Err(status) => {
                    assert!(!may(call), "{role} may {call}, yet: {status:?}");
                    assert_eq!(status.code(), Code::PermissionDenied, "{role} {call}: {status:?}");
                }
            }
        }
    }
    s.pair.stop().await;
}
