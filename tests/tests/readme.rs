//! The README's shell blocks, run in order as a newcomer would run them from
//! the repository root, against a real pair started by the README's own
//! run command.
//!
//! Every block fenced as `sh` runs, in one bash session (so variables carry
//! from block to block), in a scratch directory that holds the
//! repository's `deploy/`. Blocks fenced otherwise (`text`) are not run:
//! the test command itself, the benchmark, and production layouts with
//! system paths. Three things differ from a newcomer's shell, and only
//! these:
//! - `cargo run --release -p truce -- ARGS` runs the `truce` command line
//!   already built for the tests (`truce-testbed`), so the test does not
//!   build a release; `up` runs in the background until the test ends;
//! - the pair listens on free ports, not 50051 and 50052 (which a
//!   developer's own pair may hold): the README's addresses are rewritten
//!   to them, and the defaults moved by `TRUCE_INGEST_LISTEN`,
//!   `TRUCE_QUERY_LISTEN` and `TRUCE_INGEST`;
//! - `Subscribe`, which streams until cancelled, gets `-max-time 3`.

use std::{net::TcpListener, path::Path, process::Stdio, time::Duration};

const README: &str = include_str!("../../README.md");

/// The blocks fenced as `sh`, in order.
fn shell_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), text) => {
                block.push_str(text);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Runs `cargo run --release -p truce -- ARGS` as the built command line,
/// and times out grpcurl's Subscribe.
const PRELUDE: &str = r#"
set -euo pipefail
cargo() {
    if [ "$1 $2 $3 $4 $5" != "run --release -p truce --" ]; then
        echo "the README test runs only 'cargo run --release -p truce -- ...', not: cargo $*" >&2
        return 2
    fi
    shift 5
    if [ "$1" = up ]; then
        "$TRUCE_BIN" "$@" >up.log 2>&1 &
        echo $! >up.pid
        for _ in $(seq 300); do
            if "$TRUCE_BIN" health --address "$TRUCE_INGEST" >/dev/null 2>&1 &&
               "$TRUCE_BIN" health --address "127.0.0.1:$QUERY_PORT" --service truce.v1.QueryService >/dev/null 2>&1; then
                return 0
            fi
            kill -0 "$(cat up.pid)" 2>/dev/null || { cat up.log >&2; return 1; }
            sleep 0.1
        done
        echo "truce up did not start serving" >&2
        cat up.log >&2
        return 1
    fi
    "$TRUCE_BIN" "$@"
}
grpcurl() {
    case "$*" in
    *QueryService/Subscribe*)
        local status=0
        command grpcurl -max-time 3 "$@" || status=$?
        # grpcurl exits 64 + the gRPC code: DEADLINE_EXCEEDED is 4.
        [ "$status" = 68 ] || { echo "Subscribe ended with exit $status" >&2; return 1; }
        ;;
    *IngestService/SubmitReport*) command grpcurl "$@" | tee -a submitted.json ;;
    *) command grpcurl "$@" ;;
    esac
}
"#;

/// After the README's blocks: the zone the service derived for the sample
/// report.
const CHECK: &str = r#"
echo '=== check'
report_id="$(sed -n 's/.*"reportId": "\(.*\)".*/\1/p' submitted.json | head -n 1)"
command grpcurl -plaintext -H "authorization: Bearer $(cat truce-data/admin.token)" \
    -d "{\"report_id\": \"$report_id\"}" "127.0.0.1:$QUERY_PORT" truce.v1.QueryService/GetReport
"#;

#[tokio::test]
async fn every_readme_shell_block_runs_as_written() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let scratch = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(repo.join("deploy"), scratch.path().join("deploy")).unwrap();
    let (ingest_port, query_port) = (free_port(), free_port());

    let blocks = shell_blocks(README);
    assert!(blocks.len() >= 10, "found only {} sh blocks in README.md", blocks.len());
    let mut script = String::from(PRELUDE);
    for (n, block) in blocks.iter().enumerate() {
        let block = block
            .replace("127.0.0.1:50051", &format!("127.0.0.1:{ingest_port}"))
            .replace("127.0.0.1:50052", &format!("127.0.0.1:{query_port}"));
        script.push_str(&format!("echo '=== block {n}'\n{block}"));
    }
    script.push_str(CHECK);
    script.push_str("echo '=== done'\n");

    let mut child = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(scratch.path())
        .env("TRUCE_BIN", env!("CARGO_BIN_EXE_truce-testbed"))
        .env("TRUCE_INGEST_LISTEN", format!("127.0.0.1:{ingest_port}"))
        .env("TRUCE_QUERY_LISTEN", format!("127.0.0.1:{query_port}"))
        .env("TRUCE_INGEST", format!("127.0.0.1:{ingest_port}"))
        .env("QUERY_PORT", query_port.to_string())
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("bash");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let read = |mut pipe: Box<dyn tokio::io::AsyncRead + Unpin + Send>| async move {
        let mut text = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut pipe, &mut text)
            .await
            .map(|_| text)
    };
    let outcome = tokio::time::timeout(Duration::from_secs(180), async {
        let (out, err, status) = tokio::join!(read(Box::new(stdout)), read(Box::new(stderr)), child.wait());
        (out.unwrap_or_default(), err.unwrap_or_default(), status)
    })
    .await;
    let up_log = std::fs::read_to_string(scratch.path().join("up.log")).unwrap_or_default();
    if let Ok(pid) = std::fs::read_to_string(scratch.path().join("up.pid")) {
        let _ = std::process::Command::new("kill").arg(pid.trim()).status();
    }
    let (stdout, stderr, status) = outcome.expect("the README's blocks did not finish within 180 s");
    let status = status.expect("bash ran");
    assert!(
        status.success() && stdout.contains("=== done"),
        "a README block failed ({status}).\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- truce up\n{up_log}"
    );

    // What each block printed, by its number.
    let output = |n: usize| -> &str {
        let start = stdout.find(&format!("=== block {n}\n")).expect("block marker");
        let rest = &stdout[start..];
        let end = rest[1..].find("=== ").map_or(rest.len(), |i| i + 1);
        &rest[..end]
    };
    let block_of = |needle: &str| {
        blocks
            .iter()
            .position(|b| b.contains(needle))
            .unwrap_or_else(|| panic!("no README block has {needle}"))
    };
    let context = format!("--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- truce up\n{up_log}");

    // The start log says what geometry it loaded.
    assert!(up_log.contains("demarcation loaded"), "{context}");
    // The token files are the principal's alone.
    for token in ["idf.token", "egypt.token"] {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(scratch.path().join(token)).unwrap().permissions(),
        );
        assert_eq!(mode & 0o077, 0, "{token} is readable by others: {mode:o}");
    }
    // The ingest port lists its own services.
    let listed = output(block_of("list\n"));
    assert!(listed.contains("truce.v1.IngestService"), "{context}");
    assert!(!listed.contains("truce.v1.QueryService"), "{context}");
    // The sample report is accepted, and its stated zone agrees with the
    // one the example geometry gives its point.
    assert!(
        output(block_of("IngestService/SubmitReport")).contains("\"reportId\""),
        "{context}"
    );
    let check = &stdout[stdout.find("=== check").expect("check marker")..];
    assert!(
        check.contains("\"derivedZone\": \"ZONE_ISRAELI_CONTROLLED\""),
        "{context}"
    );
    assert!(!check.contains("zoneDisputed"), "{context}");
    // Queries, the subscription and the review answer.
    assert!(
        output(block_of("QueryService/GetIncident")).contains("\"incidentId\": \"inc-1\""),
        "{context}"
    );
    let subscribed = output(block_of("QueryService/Subscribe"));
    assert!(subscribed.contains("\"subscribed\""), "{context}");
    assert!(subscribed.contains("\"change\""), "{context}");
    assert!(
        output(block_of("IngestService/ReviewIncident")).contains("UNDER_REVIEW"),
        "{context}"
    );
    // The record verifies, through the API and on disk.
    let verified = output(block_of("verify --data-dir"));
    assert_eq!(verified.matches("verified ").count(), 2, "{context}");
    assert!(
        verified.contains("the log extends all 1 signed checkpoints given"),
        "{context}"
    );
}
