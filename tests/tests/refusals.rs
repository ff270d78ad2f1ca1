//! Refused calls in the server log, read from a real `truce up` process's
//! stderr: each refusal is one line saying which method, who (the
//! principal, or none) from which address, the code and why, whether the
//! call was turned away at the door, by its roles, or at the end of a
//! stream; and a flood of refused calls makes a bounded number of lines
//! that still account for every refusal.

use std::{
    net::SocketAddr,
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::io::AsyncBufReadExt;
use tonic::{Code, transport::Channel};
use truce_auth::{PrincipalsFile, Role};
use truce_proto::v1::{
    self, ingest_service_client::IngestServiceClient, query_service_client::QueryServiceClient,
    subscribe_request::Start,
};
use truce_tests::{PATIENCE, crossing_report, request, secure::with_token, stream};

/// A `truce up` process whose log lines are kept.
struct Up {
    _child: tokio::process::Child,
    ingest: SocketAddr,
    query: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
}

/// The value of `name=` in a log line.
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {name}="))? + name.len() + 2;
    line[start..].split_whitespace().next()
}

impl Up {
    async fn start(dir: &Path) -> Up {
        let mut args: Vec<std::ffi::OsString> = [
            "up",
            "--ingest-listen",
            "127.0.0.1:0",
            "--query-listen",
            "127.0.0.1:0",
            "--data-dir",
        ]
        .iter()
        .map(Into::into)
        .collect();
        args.push(dir.into());
        if let Some(url) = truce_tests::test_log::nats_url() {
            let settings = truce_tests::test_log::stream_for(&url, dir).await;
            for arg in [
                "--log",
                &url,
                "--nats-stream",
                &settings.stream,
                "--nats-subject-prefix",
                &settings.subject_prefix,
            ] {
                args.push(arg.into());
            }
        }
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_truce-testbed"))
            .args(&args)
            .env("RUST_LOG", "info")
            .env_remove("TRUCE_PRINCIPALS")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start truce up");
        let stderr = child.stderr.take().expect("stderr is piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&lines);
        tokio::spawn(async move {
            let mut stderr = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = stderr.next_line().await {
                kept.lock().expect("lines").push(line);
            }
        });
        let since = Instant::now();
        let (ingest, query) = loop {
            let address = |service: &str| {
                lines.lock().expect("lines").iter().find_map(|line| {
                    (line.contains("listening") && field(line, "service") == Some(service))
                        .then(|| field(line, "address").and_then(|a| a.parse::<SocketAddr>().ok()))
                        .flatten()
                })
            };
            if let (Some(ingest), Some(query)) = (address("\"ingest\""), address("\"query\"")) {
                break (ingest, query);
            }
            assert!(
                since.elapsed() < PATIENCE,
                "truce up did not listen: {:#?}",
                lines.lock()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Up {
            _child: child,
            ingest,
            query,
            lines,
        }
    }

    /// How many lines it has written.
    fn written(&self) -> usize {
        self.lines.lock().expect("lines").len()
    }

    /// Its refusal lines after the first `from` lines.
    fn refusals_since(&self, from: usize) -> Vec<String> {
        self.lines.lock().expect("lines")[from..]
            .iter()
            .filter(|line| line.contains("call refused"))
            .cloned()
            .collect()
    }

    /// Waits for the refusal lines after the first `from` to be `count`,
    /// and for nothing more to come.
    async fn refusals(&self, from: usize, count: usize) -> Vec<String> {
        let since = Instant::now();
        while self.refusals_since(from).len() < count {
            assert!(since.elapsed() < PATIENCE, "{:#?}", self.refusals_since(from));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.refusals_since(from)
    }
}

async fn channel(addr: SocketAddr) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect")
}

/// Checks one refusal line's fields.
fn says(line: &str, method: &str, principal: &str, code: &str, reason: &str) {
    assert_eq!(field(line, "method"), Some(format!("\"{method}\"").as_str()), "{line}");
    assert_eq!(field(line, "principal"), Some(principal), "{line}");
    assert_eq!(field(line, "code"), Some(code), "{line}");
    let peer = field(line, "peer").expect("a peer");
    assert!(peer.parse::<SocketAddr>().is_ok_and(|p| p.ip().is_loopback()), "{line}");
    let said = &line[line.find(" reason=").expect("a reason")..];
    assert!(said.contains(reason), "{reason:?} in {line}");
}

#[tokio::test]
async fn each_refused_call_is_logged_once_and_a_flood_makes_a_bounded_number_of_lines() {
    let dir = tempfile::tempdir().expect("test setup");
    let up = Up::start(dir.path()).await;
    let file = PrincipalsFile::new(dir.path().join("principals.json"));
    let observer = file
        .add("un-reader", &"un".parse().expect("party"), &[Role::Observer])
        .expect("add")
        .token;
    let mut ingest = IngestServiceClient::new(channel(up.ingest).await);
    let mut query = QueryServiceClient::new(channel(up.query).await);

    // By its roles: an observer may not report.
    let from = up.written();
    let status = ingest
        .submit_report(with_token(&observer, request("", crossing_report())))
        .await
        .expect_err("an observer may not report");
    assert_eq!(status.code(), Code::PermissionDenied);
    let lines = up.refusals(from, 1).await;
    assert_eq!(lines.len(), 1, "once: {lines:#?}");
    says(
        &lines[0],
        "/truce.v1.IngestService/SubmitReport",
        "un-reader",
        "PermissionDenied",
        "may not submit reports",
    );

    // At the door: no token.
    let from = up.written();
    let status = query
        .list_incidents(v1::ListIncidentsRequest::default())
        .await
        .expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated);
    let lines = up.refusals(from, 1).await;
    assert_eq!(lines.len(), 1, "once: {lines:#?}");
    says(
        &lines[0],
        "/truce.v1.QueryService/ListIncidents",
        "-",
        "Unauthenticated",
        "authorization: Bearer",
    );

    // At the end of a stream: its principal is revoked.
    let mut changes = query
        .subscribe(with_token(&observer, stream::request("", Start::FromNow(true))))
        .await
        .expect("subscribe")
        .into_inner();
    stream::next(&mut changes).await.expect("subscribed");
    let from = up.written();
    file.revoke("un-reader").expect("revoke");
    let status = loop {
        if let Err(status) = stream::next(&mut changes).await {
            break status;
        }
    };
    assert_eq!(status.code(), Code::Unauthenticated);
    let lines = up.refusals(from, 1).await;
    assert_eq!(lines.len(), 1, "once: {lines:#?}");
    says(
        &lines[0],
        "/truce.v1.QueryService/Subscribe",
        "un-reader",
        "Unauthenticated",
        "revoked or replaced",
    );

    // A flood of forged tokens, in a fresh window of the rate limit.
    const FLOOD: usize = 10_000;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let from = up.written();
    let started = Instant::now();
    let mut callers = tokio::task::JoinSet::new();
    for caller in 0..64 {
        let channel = channel(if caller % 2 == 0 { up.query } else { up.ingest }).await;
        callers.spawn(async move {
            let mut query = QueryServiceClient::new(channel.clone());
            let mut ingest = IngestServiceClient::new(channel);
            for n in (caller..FLOOD).step_by(64) {
                let token = format!("truce_forged_{n}");
                let status = if caller % 2 == 0 {
                    query
                        .list_incidents(with_token(&token, v1::ListIncidentsRequest::default()))
                        .await
                        .expect_err("a forged token")
                } else {
                    ingest
                        .submit_report(with_token(&token, request("", crossing_report())))
                        .await
                        .expect_err("a forged token")
                };
                assert_eq!(status.code(), Code::Unauthenticated);
            }
        });
    }
    while let Some(done) = callers.join_next().await {
        done.expect("a flooding caller");
    }
    let took = started.elapsed();
    // The count of what was left out comes at the end of its window.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let written: Vec<String> = up.lines.lock().expect("lines")[from..].to_vec();
    let logged = written.iter().filter(|line| line.contains("call refused")).count();
    let left_out: usize = written
        .iter()
        .filter_map(|line| field(line, "left_out").and_then(|n| n.parse::<usize>().ok()))
        .sum();
    let windows = took.as_secs() as usize + 2;
    eprintln!(
        "{FLOOD} refused calls in {took:?}: {} lines, {logged} refusal lines, {left_out} counted in summaries",
        written.len()
    );
    assert_eq!(logged + left_out, FLOOD, "every refusal is logged or counted");
    assert!(
        logged <= truce_serve::refusals::LINES_PER_SECOND as usize * windows,
        "{logged} refusal lines in {took:?}"
    );
    assert!(
        written.len() <= (truce_serve::refusals::LINES_PER_SECOND as usize + 1) * windows,
        "{} lines in {took:?}: {written:#?}",
        written.len()
    );
}
