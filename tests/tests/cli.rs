//! The `truce` command line as a newcomer meets it when something is wrong:
//! one line saying what and where, each cause once, and a non-zero exit.

use std::process::Output;

async fn truce(args: &[&str], dir: &std::path::Path) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_truce-testbed"))
        .args(args)
        .current_dir(dir)
        .env_remove("TRUCE_INGEST")
        .output()
        .await
        .expect("the truce command runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn a_port_in_use_is_named_with_its_flag() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let output = truce(
        &["up", "--ingest-listen", &address, "--query-listen", "127.0.0.1:0"],
        dir.path(),
    )
    .await;
    assert!(!output.status.success());
    let said = stderr(&output);
    assert!(
        said.contains(&format!("error: cannot listen on {address} (--ingest-listen)")),
        "{said}"
    );
    assert!(said.contains("another process holds the port"), "{said}");
}

#[tokio::test]
async fn each_cause_is_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let output = truce(&["verify", "--data-dir", "nope"], dir.path()).await;
    assert!(!output.status.success());
    let said = stderr(&output);
    assert_eq!(said.trim_end().lines().count(), 1, "{said}");
    assert_eq!(said.matches("nope holds no log").count(), 1, "{said}");

    // Nothing listens on port 1 of loopback.
    let output = truce(&["checkpoint", "--log", "127.0.0.1:1"], dir.path()).await;
    assert!(!output.status.success());
    let said = stderr(&output);
    assert!(said.starts_with("error: connecting to http://127.0.0.1:1"), "{said}");
    assert_eq!(said.matches("onnection refused").count(), 1, "{said}");
}

#[tokio::test]
async fn addresses_are_taken_as_grpcurl_takes_them_or_as_urls() {
    let dir = tempfile::tempdir().unwrap();
    let pair = truce_tests::Pair::start(dir.path()).await;
    for address in [pair.ingest.to_string(), format!("http://{}", pair.ingest)] {
        let output = truce(&["health", "--address", &address], dir.path()).await;
        assert!(output.status.success(), "{address}: {}", stderr(&output));
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "SERVING");
    }
    // The demo pointed at the query port says where the ingest service is.
    let query = pair.query.to_string();
    let output = truce(&["demo", "--insecure-loopback", "--ingest", &query], dir.path()).await;
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains(&format!(
            "truce.v1.IngestService is served on the ingest port, {}",
            pair.ingest
        )),
        "{}",
        stderr(&output)
    );
    let output = truce(&["health", "--address", "nats://127.0.0.1:4222"], dir.path()).await;
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("must be host:port, http://host:port or https://host:port"),
        "{}",
        stderr(&output)
    );
    pair.stop().await;
}
