//! A record anyone can verify: signed checkpoints from `GetLogHead`, and
//! `truce verify` finding a flipped byte, a consistent rewrite of history
//! and a cut, each at its position.

use std::{ffi::OsString, path::Path};

use truce_proto::v1;
use truce_tests::{Pair, numbered_report, submit_many};

const TRUCE: &str = env!("CARGO_BIN_EXE_truce-testbed");

/// Runs the `truce` command line; returns whether it succeeded, and its
/// stdout and stderr.
async fn truce(args: &[OsString]) -> (bool, String, String) {
    let output = tokio::process::Command::new(TRUCE)
        .args(args)
        .output()
        .await
        .expect("run truce");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn args(words: &[&str], path: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = words.iter().map(Into::into).collect();
    args.push(path.into());
    args
}

/// A log of `count` reports in `dir`, and a checkpoint of its head saved as
/// `dir/checkpoint.json` by `truce checkpoint` through the API.
async fn log_with_checkpoint(dir: &Path, count: u32) -> std::path::PathBuf {
    let pair = Pair::start(dir).await;
    let mut ingest = pair.ingest_client().await;
    let head = submit_many(&mut ingest, (0..count).map(numbered_report)).await;
    let (ok, checkpoint, stderr) = truce(&[
        "checkpoint".into(),
        "--log".into(),
        format!("http://{}", pair.ingest).into(),
    ])
    .await;
    assert!(ok, "truce checkpoint failed: {stderr}");
    let parsed: serde_json::Value = serde_json::from_str(&checkpoint).expect("checkpoint JSON");
    assert_eq!(parsed["position"], head, "{checkpoint}");
    // Through the API too, with a range of entries and their hashes.
    let (ok, stdout, stderr) = truce(&[
        "verify".into(),
        "--log".into(),
        format!("http://{}", pair.ingest).into(),
    ])
    .await;
    assert!(ok, "verify through the API failed: {stderr}");
    assert!(stdout.contains(&format!("verified {head} entries")), "{stdout}");
    pair.stop().await;
    let path = dir.join("checkpoint.json");
    std::fs::write(&path, checkpoint).expect("save the checkpoint");
    path
}

fn sqlite(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join("log.sqlite3")).expect("open the stored log")
}

#[tokio::test]
async fn a_flipped_byte_is_found_at_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = log_with_checkpoint(dir.path(), 12).await;
    let (ok, stdout, stderr) = truce(&args(&["verify", "--data-dir"], dir.path())).await;
    assert!(ok, "the untouched log fails: {stderr}");
    assert!(stdout.contains("verified 12 entries"), "{stdout}");

    // Flip one bit of one byte in the middle of the event stored at 7.
    let conn = sqlite(dir.path());
    let mut payload: Vec<u8> = conn
        .query_row("SELECT payload FROM entries WHERE position = 7", [], |r| r.get(0))
        .unwrap();
    let middle = payload.len() / 2;
    payload[middle] ^= 0x01;
    conn.execute("UPDATE entries SET payload = ?1 WHERE position = 7", [&payload])
        .unwrap();
    drop(conn);

    let (ok, _, stderr) = truce(&args(&["verify", "--data-dir"], dir.path())).await;
    assert!(!ok, "a tampered log verifies");
    assert!(stderr.contains("broken at position 7:"), "{stderr}");
    let mut with_checkpoint = args(&["verify", "--checkpoint"], &checkpoint);
    with_checkpoint.extend(args(&["--data-dir"], dir.path()));
    let (ok, _, stderr) = truce(&with_checkpoint).await;
    assert!(!ok);
    assert!(stderr.contains("broken at position 7:"), "{stderr}");
}

/// An operator who rewrites an event and recomputes every hash after it
/// keeps the chain consistent; a checkpoint held by a party still shows it.
#[tokio::test]
async fn a_consistent_rewrite_contradicts_a_held_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = log_with_checkpoint(dir.path(), 10).await;

    let conn = sqlite(dir.path());
    let entries: Vec<(i64, Vec<u8>)> = conn
        .prepare("SELECT position, payload FROM entries ORDER BY position")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut previous = truce_log::GENESIS_HASH;
    for (position, mut payload) in entries {
        if position == 4 {
            let middle = payload.len() / 2;
            payload[middle] ^= 0x01;
        }
        let hash = truce_log::chain_hash(&previous, &payload);
        conn.execute(
            "UPDATE entries SET payload = ?1, hash = ?2 WHERE position = ?3",
            rusqlite::params![payload, hash.to_vec(), position],
        )
        .unwrap();
        previous = hash;
    }
    drop(conn);

    // The chain alone cannot tell (the bytes still decode or not: either
    // way the links hold up to 4)...
    let mut with_checkpoint = args(&["verify", "--checkpoint"], &checkpoint);
    with_checkpoint.extend(args(&["--data-dir"], dir.path()));
    let (ok, _, stderr) = truce(&with_checkpoint).await;
    assert!(!ok, "a rewritten log extends the checkpoint");
    // ...but the checkpoint does: either the rewritten event no longer
    // decodes (found at 4) or the head no longer matches the signed hash
    // (found at the checkpoint's position, 10).
    assert!(
        stderr.contains("broken at position 4:") || stderr.contains("broken at position 10: the log no longer extends"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_cut_history_and_a_forged_checkpoint_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = log_with_checkpoint(dir.path(), 6).await;

    // A forged checkpoint: the position moved, the signature kept.
    let mut forged: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&checkpoint).unwrap()).unwrap();
    forged["position"] = 5.into();
    let forged_path = dir.path().join("forged.json");
    std::fs::write(&forged_path, forged.to_string()).unwrap();
    let mut with_forged = args(&["verify", "--checkpoint"], &forged_path);
    with_forged.extend(args(&["--data-dir"], dir.path()));
    let (ok, _, stderr) = truce(&with_forged).await;
    assert!(!ok);
    assert!(stderr.contains("the signature does not match"), "{stderr}");

    // Pinning another service key refuses a genuine checkpoint.
    let mut pinned = args(
        &["verify", "--service-key", &"ab".repeat(32), "--checkpoint"],
        &checkpoint,
    );
    pinned.extend(args(&["--data-dir"], dir.path()));
    let (ok, _, stderr) = truce(&pinned).await;
    assert!(!ok);
    assert!(stderr.contains("not by the service key"), "{stderr}");

    // The last two events removed: the chain that is left is intact, but
    // the checkpoint held an entry at 6.
    sqlite(dir.path())
        .execute("DELETE FROM entries WHERE position > 4", [])
        .unwrap();
    let (ok, stdout, _) = truce(&args(&["verify", "--data-dir"], dir.path())).await;
    assert!(ok, "a shorter but intact chain verifies on its own");
    assert!(stdout.contains("verified 4 entries"), "{stdout}");
    let mut with_checkpoint = args(&["verify", "--checkpoint"], &checkpoint);
    with_checkpoint.extend(args(&["--data-dir"], dir.path()));
    let (ok, _, stderr) = truce(&with_checkpoint).await;
    assert!(!ok);
    assert!(stderr.contains("broken at position 5: the log ends at 4"), "{stderr}");
}

/// The head is signed by a key that persists across restarts.
#[tokio::test]
async fn the_signing_key_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let head = |pair: &Pair| {
        let addr = pair.ingest;
        async move {
            let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
                .expect("url")
                .connect()
                .await
                .expect("connect");
            v1::log_service_client::LogServiceClient::new(channel)
                .get_log_head(v1::GetLogHeadRequest {})
                .await
                .expect("GetLogHead")
                .into_inner()
        }
    };
    let pair = Pair::start(dir.path()).await;
    let empty = head(&pair).await;
    assert_eq!(empty.position, 0);
    let mut ingest = pair.ingest_client().await;
    submit_many(&mut ingest, (0..3).map(numbered_report)).await;
    let first = head(&pair).await;
    pair.stop().await;
    let pair = Pair::start(dir.path()).await;
    let second = head(&pair).await;
    pair.stop().await;
    assert_eq!(first.position, 3);
    assert_eq!(first.public_key, second.public_key);
    assert_eq!(first.hash, second.hash);
    assert_ne!(first.hash, empty.hash);
}

/// `truce verify --log` reads up to the head the service signed, checks the
/// hash there and who signed it, and says what it could not check: a log
/// served cut short of its signed head, a head signed by another key than
/// --service-key, and a signed head whose hash the log does not have are
/// refused; without a trusted key it says the head's signer went unchecked.
#[tokio::test]
async fn verify_through_the_api_reaches_the_signed_head_and_checks_its_signer() {
    use truce_tests::forged;

    let dir = tempfile::tempdir().unwrap();
    let pair = Pair::start(dir.path()).await;
    let mut ingest = pair.ingest_client().await;
    submit_many(&mut ingest, (0..10).map(numbered_report)).await;
    let (head, entries) = forged::read_log(pair.ingest, None).await;
    assert_eq!(head.position, 10);
    let url = format!("http://{}", pair.ingest);
    let verify = |url: String, extra: Vec<OsString>| async move {
        let mut words: Vec<OsString> = vec!["verify".into(), "--log".into(), url.into()];
        words.extend(extra);
        truce(&words).await
    };

    // No key known: it verifies, and says the head's signer is unchecked.
    let (ok, stdout, stderr) = verify(url.clone(), vec![]).await;
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("NOT CHECKED: who signed the head") && stdout.contains(&head.public_key),
        "{stdout}"
    );
    assert!(stdout.contains("NOT CHECKED: whose keys signed"), "{stdout}");

    // The service key given out of band, or held in a checkpoint.
    let (ok, stdout, stderr) = verify(
        url.clone(),
        vec!["--service-key".into(), head.public_key.clone().into()],
    )
    .await;
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("the log reaches the head the service signed (position 10, same hash), signed with the service key given with --service-key"),
        "{stdout}"
    );
    let held = dir.path().join("held.json");
    let (ok, checkpoint, stderr) = truce(&["checkpoint".into(), "--log".into(), url.clone().into()]).await;
    assert!(ok, "{stderr}");
    std::fs::write(&held, checkpoint).unwrap();
    let (ok, stdout, stderr) = verify(url.clone(), args(&["--checkpoint"], &held)).await;
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("signed with the key of the checkpoints given"),
        "{stdout}"
    );
    assert!(stdout.contains("NOT CHECKED: who signed the checkpoints"), "{stdout}");

    // The genuine service pinned to another key.
    let other = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
    let other_key = hex::encode(other.verifying_key().to_bytes());
    let (ok, _, stderr) = verify(url.clone(), vec!["--service-key".into(), other_key.clone().into()]).await;
    assert!(!ok);
    assert!(
        stderr.contains("signed head (GetLogHead)") && stderr.contains("not by the service key"),
        "{stderr}"
    );
    pair.stop().await;

    let pinned = vec!["--service-key".into(), head.public_key.clone().into()];
    // A server that serves the genuine signed head but a log that ends
    // two entries early.
    let cut = forged::ForgedLog::serve(entries[..8].to_vec(), head.clone()).await;
    let (ok, _, stderr) = verify(cut.url(), pinned.clone()).await;
    assert!(!ok, "a log cut short of its signed head verifies");
    assert!(
        stderr.contains("broken at position 9: the log read ends at 8, before the head the service signed at 10"),
        "{stderr}"
    );

    // The whole log, under a head signed by another key.
    let resigned =
        forged::ForgedLog::serve(entries.clone(), forged::head_of(&other, &head.incarnation, &entries)).await;
    let (ok, _, stderr) = verify(resigned.url(), pinned.clone()).await;
    assert!(!ok, "a head signed by another key verifies");
    assert!(
        stderr.contains(&format!("signed by {other_key}, not by the service key")),
        "{stderr}"
    );
    let (ok, stdout, _) = verify(resigned.url(), vec![]).await;
    assert!(ok);
    assert!(
        stdout.contains(&format!(
            "checked only against the key the server itself presented ({other_key})"
        )),
        "{stdout}"
    );

    // A head the service key signed, whose hash the log does not have.
    let signer =
        truce_log::CheckpointSigner::load_or_create(&dir.path().join("checkpoint.key")).expect("the service key");
    assert_eq!(hex::encode(signer.public_key()), head.public_key);
    let wrong = truce_log::Checkpoint {
        incarnation: head.incarnation.clone(),
        position: 10,
        hash: entries[8].hash.as_slice().try_into().unwrap(),
    };
    let wrong_head = v1::GetLogHeadResponse {
        hash: hex::encode(wrong.hash),
        signature: hex::encode(signer.sign(&wrong)),
        ..head.clone()
    };
    let mismatched = forged::ForgedLog::serve(entries.clone(), wrong_head).await;
    let (ok, _, stderr) = verify(mismatched.url(), pinned).await;
    assert!(!ok, "a log without the signed head's hash verifies");
    assert!(
        stderr.contains("broken at position 10: the signed head has hash"),
        "{stderr}"
    );
}
