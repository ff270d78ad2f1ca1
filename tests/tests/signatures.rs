//! Signatures bound to what they sign, tried from the attacker's side over
//! real gRPC: a party's signed report replayed as a new report, an old
//! signed amendment re-applied over a later correction, one report's signed
//! content attached to another report, a signed report retracted without a
//! signature; and `truce verify` shown a log whose signatures were moved to
//! another act or report. Each is refused, or found.

use std::time::Duration;

use ed25519_dalek::SigningKey;
use tonic::Code;
use truce_proto::v1;
use truce_tests::{
    crossing_report, forged, numbered_report,
    secure::{Secure, secure_pair, with_token},
    signing::{self, sign},
};

/// Services on tokens where party idf signs with the returned key; with
/// `required`, the principals file says idf must sign.
async fn signing_pair(required: bool) -> (Secure, SigningKey) {
    let s = secure_pair().await;
    let key = SigningKey::from_bytes(&[42; 32]);
    s.file
        .add_party_key(
            &"idf".parse().expect("party"),
            &hex::encode(key.verifying_key().to_bytes()),
        )
        .expect("register the key");
    if required {
        let path = s.file.path().to_owned();
        let mut document: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read principals")).expect("principals JSON");
        for party in document["parties"].as_array_mut().expect("parties") {
            if party["party"] == "idf" {
                party["require_signatures"] = true.into();
            }
        }
        // Written the way the file is: a new file of mode 0600, renamed.
        let temporary = path.with_extension("edited");
        {
            use std::{io::Write, os::unix::fs::OpenOptionsExt};
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temporary)
                .expect("create");
            file.write_all(&serde_json::to_vec_pretty(&document).expect("JSON"))
                .expect("write");
        }
        std::fs::rename(&temporary, &path).expect("rename");
    }
    tokio::time::sleep(truce_serve::auth::RELOAD_POLL + Duration::from_millis(800)).await;
    (s, key)
}

/// `report` submitted by idf under `key`, signed with `signing_key`.
fn signed_submission(key: &str, report: &v1::Report, signing_key: &SigningKey) -> v1::SubmitReportRequest {
    v1::SubmitReportRequest {
        client_report_id: key.into(),
        report: Some(report.clone()),
        signature: sign(signing_key, &signing::submit(key, report)),
    }
}

/// Asserts `status` is INVALID_ARGUMENT naming `field` with `rule`.
fn assert_invalid(status: &tonic::Status, field: &str, rule: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let violations = truce_tests::violations(status);
    assert!(
        violations.iter().any(|(f, r)| f == field && r.contains(rule)),
        "wanted {field}: {rule}; got {violations:?}"
    );
}

async fn head_position(s: &Secure) -> u64 {
    forged::read_log(s.pair.ingest, Some(&s.observer)).await.0.position
}

/// A signed report sent again under another key (or none) is refused: the
/// signature is bound to the key it was submitted under. Under its own key
/// it is the same submission, answered again and stored once.
#[tokio::test]
async fn a_signed_report_cannot_be_replayed_as_a_new_report() {
    let (s, key) = signing_pair(false).await;
    let mut ingest = s.pair.ingest_client().await;
    let report = crossing_report();
    let original = signed_submission("idf-2025-11-22-01", &report, &key);
    let accepted = ingest
        .submit_report(with_token(&s.idf, original.clone()))
        .await
        .expect("a good signature is accepted")
        .into_inner();

    let replayed = v1::SubmitReportRequest {
        client_report_id: "idf-2025-11-22-99".into(),
        ..original.clone()
    };
    let status = ingest
        .submit_report(with_token(&s.idf, replayed))
        .await
        .expect_err("a replay under a new key is refused");
    assert_invalid(&status, "signature", "does not verify");
    assert!(
        status.message().contains("submit submission idf-2025-11-22-99"),
        "{status:?}"
    );

    let keyless = v1::SubmitReportRequest {
        client_report_id: String::new(),
        ..original.clone()
    };
    let status = ingest
        .submit_report(with_token(&s.idf, keyless))
        .await
        .expect_err("a signed report without a key is refused");
    assert_invalid(&status, "client_report_id", "is required with a signature");

    let again = ingest
        .submit_report(with_token(&s.idf, original))
        .await
        .expect("a retry under the same key")
        .into_inner();
    assert!(again.replayed);
    assert_eq!(again.report_id, accepted.report_id);
    assert_eq!(head_position(&s).await, accepted.position, "nothing new was stored");
    s.pair.stop().await;
}

/// Amendments are bound to the version they replace: resending an old
/// signed amendment after a later correction, re-pointing it at the current
/// version, or passing the signed original off as an amendment, is refused,
/// and the correction stands.
#[tokio::test]
async fn an_old_signed_version_cannot_roll_back_a_correction() {
    let (s, key) = signing_pair(false).await;
    let mut ingest = s.pair.ingest_client().await;
    let original = crossing_report();
    let accepted = ingest
        .submit_report(with_token(&s.idf, signed_submission("idf-1", &original, &key)))
        .await
        .expect("submit")
        .into_inner();
    let id = accepted.report_id.as_str();
    let amendment = |version: u32, summary: &str, reason: &str| {
        let mut report = original.clone();
        report.summary = summary.into();
        v1::AmendReportRequest {
            report_id: id.into(),
            signature: sign(&key, &signing::amend(id, version, &report, reason)),
            report: Some(report),
            reason: reason.into(),
            replaces_version: version,
        }
    };
    let second = amendment(1, "Two gunmen crossed the line.", "a second gunman");
    let third = amendment(2, "Two gunmen crossed; one was armed.", "only one was armed");
    for request in [&second, &third] {
        ingest
            .amend_report(with_token(&s.idf, request.clone()))
            .await
            .expect("a signed amendment of the current version");
    }

    let status = ingest
        .amend_report(with_token(&s.idf, second.clone()))
        .await
        .expect_err("the old amendment again");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("is at version 3, not 1"), "{status:?}");

    let repointed = v1::AmendReportRequest {
        replaces_version: 3,
        ..second.clone()
    };
    let status = ingest
        .amend_report(with_token(&s.idf, repointed))
        .await
        .expect_err("the old amendment pointed at the current version");
    assert_invalid(&status, "signature", "does not verify");

    let original_as_amendment = v1::AmendReportRequest {
        report_id: id.into(),
        report: Some(original.clone()),
        reason: "back to the first account".into(),
        signature: sign(&key, &signing::submit("idf-1", &original)),
        replaces_version: 3,
    };
    let status = ingest
        .amend_report(with_token(&s.idf, original_as_amendment))
        .await
        .expect_err("the signed original as an amendment");
    assert_invalid(&status, "signature", "does not verify");

    let unversioned = v1::AmendReportRequest {
        replaces_version: 0,
        ..third.clone()
    };
    let status = ingest
        .amend_report(with_token(&s.idf, unversioned))
        .await
        .expect_err("a signed amendment names its version");
    assert_invalid(&status, "replaces_version", "is required with a signature");

    let mut query = s.pair.query_client().await;
    let current = query
        .get_report(with_token(
            &s.observer,
            v1::GetReportRequest {
                report_id: id.into(),
                min_position: accepted.position + 2,
            },
        ))
        .await
        .expect("get")
        .into_inner()
        .report
        .expect("report");
    assert_eq!(current.version, 3);
    assert_eq!(
        current.report.expect("content").summary,
        "Two gunmen crossed; one was armed."
    );
    s.pair.stop().await;
}

/// An amendment signed for one report does not apply to another, nor does
/// one report's signed submission.
#[tokio::test]
async fn one_reports_signed_content_cannot_be_attached_to_another() {
    let (s, key) = signing_pair(false).await;
    let mut ingest = s.pair.ingest_client().await;
    let (first, second) = (numbered_report(1), numbered_report(2));
    let mut ids = Vec::new();
    for (n, report) in [&first, &second].into_iter().enumerate() {
        let accepted = ingest
            .submit_report(with_token(&s.idf, signed_submission(&format!("idf-{n}"), report, &key)))
            .await
            .expect("submit")
            .into_inner();
        ids.push(accepted.report_id);
    }
    let mut corrected = first.clone();
    corrected.summary = "report number 1, corrected".into();
    let for_first = sign(&key, &signing::amend(&ids[0], 1, &corrected, "corrected"));
    let status = ingest
        .amend_report(with_token(
            &s.idf,
            v1::AmendReportRequest {
                report_id: ids[1].clone(),
                report: Some(corrected.clone()),
                reason: "corrected".into(),
                signature: for_first,
                replaces_version: 1,
            },
        ))
        .await
        .expect_err("the first report's amendment applied to the second");
    assert_invalid(&status, "signature", "does not verify");
    assert!(
        status.message().contains(&format!("amend {} version 1", ids[1])),
        "{status:?}"
    );

    let status = ingest
        .amend_report(with_token(
            &s.idf,
            v1::AmendReportRequest {
                report_id: ids[1].clone(),
                report: Some(first.clone()),
                reason: "replaced".into(),
                signature: sign(&key, &signing::submit("idf-0", &first)),
                replaces_version: 1,
            },
        ))
        .await
        .expect_err("the first report's signed submission as the second's new version");
    assert_invalid(&status, "signature", "does not verify");
    s.pair.stop().await;
}

/// A party that requires signatures signs its amendments and retractions
/// too: an unsigned one is refused, a signed retraction is kept in the log
/// with the version it retracts.
#[tokio::test]
async fn a_party_that_signs_cannot_be_retracted_unsigned() {
    let (s, key) = signing_pair(true).await;
    let mut ingest = s.pair.ingest_client().await;
    let report = crossing_report();
    let status = ingest
        .submit_report(with_token(&s.idf, truce_tests::request("idf-unsigned", report.clone())))
        .await
        .expect_err("unsigned");
    assert_invalid(&status, "signature", "is required");
    let accepted = ingest
        .submit_report(with_token(&s.idf, signed_submission("idf-1", &report, &key)))
        .await
        .expect("signed")
        .into_inner();
    let id = accepted.report_id.as_str();

    let status = ingest
        .retract_report(with_token(
            &s.idf,
            v1::RetractReportRequest {
                report_id: id.into(),
                reason: "withdrawn".into(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("an unsigned retraction");
    assert_invalid(&status, "signature", "is required");
    let status = ingest
        .amend_report(with_token(
            &s.idf,
            v1::AmendReportRequest {
                report_id: id.into(),
                report: Some(report.clone()),
                reason: "unsigned".into(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("an unsigned amendment");
    assert_invalid(&status, "signature", "is required");

    // A retraction signed for another reason does not hold for this one.
    let status = ingest
        .retract_report(with_token(
            &s.idf,
            v1::RetractReportRequest {
                report_id: id.into(),
                reason: "withdrawn".into(),
                signature: sign(&key, &signing::retract("idf", id, 1, "a duplicate")),
                replaces_version: 1,
            },
        ))
        .await
        .expect_err("a signature over another reason");
    assert_invalid(&status, "signature", "does not verify");
    assert_eq!(head_position(&s).await, accepted.position, "nothing refused was stored");

    let signature = sign(&key, &signing::retract("idf", id, 1, "withdrawn"));
    let retracted = ingest
        .retract_report(with_token(
            &s.idf,
            v1::RetractReportRequest {
                report_id: id.into(),
                reason: "withdrawn".into(),
                signature: signature.clone(),
                replaces_version: 1,
            },
        ))
        .await
        .expect("a signed retraction")
        .into_inner();
    let (_, entries) = forged::read_log(s.pair.ingest, Some(&s.observer)).await;
    let event = {
        use prost::Message;
        v1::LogEvent::decode(entries.last().expect("entries").event.as_slice()).expect("event")
    };
    assert_eq!(event.position, retracted.position);
    let Some(v1::log_event::Body::ReportRetracted(kept)) = event.body else {
        panic!("not a retraction: {event:?}");
    };
    assert_eq!(kept.version, 1);
    assert_eq!(kept.signature.expect("the signature is kept").signature, signature);
    s.pair.stop().await;
}

/// `truce verify --principals` finds a signature moved in the log: a
/// submission's to another client key, an amendment's to another report, a
/// retraction's to another report, and a submission's onto an amendment
/// with the very same content (a content-only signature would hold there).
/// The entries come from the real service; the rewritten log, its chain
/// recomputed, is served as the operator would serve it.
#[tokio::test]
async fn verify_finds_a_signature_moved_to_another_act_or_report() {
    let (s, key) = signing_pair(false).await;
    let mut ingest = s.pair.ingest_client().await;
    let (first, second) = (numbered_report(1), numbered_report(2));
    let mut ids = Vec::new();
    for (n, report) in [&first, &second].into_iter().enumerate() {
        let accepted = ingest
            .submit_report(with_token(&s.idf, signed_submission(&format!("idf-{n}"), report, &key)))
            .await
            .expect("submit")
            .into_inner();
        ids.push(accepted.report_id);
    }
    // An amendment to the very content first submitted.
    ingest
        .amend_report(with_token(
            &s.idf,
            v1::AmendReportRequest {
                report_id: ids[0].clone(),
                report: Some(first.clone()),
                reason: "restated".into(),
                signature: sign(&key, &signing::amend(&ids[0], 1, &first, "restated")),
                replaces_version: 1,
            },
        ))
        .await
        .expect("amend");
    ingest
        .retract_report(with_token(
            &s.idf,
            v1::RetractReportRequest {
                report_id: ids[0].clone(),
                reason: "withdrawn".into(),
                signature: sign(&key, &signing::retract("idf", &ids[0], 2, "withdrawn")),
                replaces_version: 2,
            },
        ))
        .await
        .expect("retract");
    let (_, entries) = forged::read_log(s.pair.ingest, Some(&s.observer)).await;
    let principals = s.file.path().to_owned();
    s.pair.stop().await;

    use prost::Message;
    let decode = |entry: &v1::LogEntry| v1::LogEvent::decode(entry.event.as_slice()).expect("event");
    let at = |body: fn(&v1::log_event::Body) -> bool| {
        entries
            .iter()
            .position(|e| decode(e).body.as_ref().is_some_and(body))
            .expect("the event")
    };
    let submitted = at(
        |b| matches!(b, v1::log_event::Body::ReportRecorded(r) if r.report.as_ref().unwrap().client_report_id == "idf-1"),
    );
    let amended = at(|b| matches!(b, v1::log_event::Body::ReportAmended(_)));
    let retracted = at(|b| matches!(b, v1::log_event::Body::ReportRetracted(_)));
    let first_signature = {
        let first_at = at(
            |b| matches!(b, v1::log_event::Body::ReportRecorded(r) if r.report.as_ref().unwrap().client_report_id == "idf-0"),
        );
        let Some(v1::log_event::Body::ReportRecorded(r)) = decode(&entries[first_at]).body else {
            unreachable!()
        };
        r.report.unwrap().signature
    };
    let service_key = SigningKey::from_bytes(&[5; 32]);
    let verify = |entries: Vec<v1::LogEntry>| {
        let principals = principals.clone();
        let service_key = service_key.clone();
        async move {
            let head = forged::head_of(&service_key, "forged", &entries);
            let served = forged::ForgedLog::serve(entries, head).await;
            let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_truce-testbed"))
                .args(["verify", "--log", &served.url(), "--service-key"])
                .arg(hex::encode(service_key.verifying_key().to_bytes()))
                .arg("--principals")
                .arg(&principals)
                .output()
                .await
                .expect("run truce verify");
            (
                output.status.success(),
                String::from_utf8_lossy(&output.stdout).into_owned(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            )
        }
    };

    let (ok, stdout, stderr) = verify(entries.clone()).await;
    assert!(ok, "the log as recorded verifies: {stderr}");
    assert!(
        stdout.contains("4 signatures hold, each bound to its act, party, report and replaced version"),
        "{stdout}"
    );
    assert!(stdout.contains("every signing key is registered"), "{stdout}");

    let rewrite = |index: usize, change: &dyn Fn(&mut v1::log_event::Body)| {
        let mut entries = entries.clone();
        let mut event = decode(&entries[index]);
        change(event.body.as_mut().expect("a body"));
        entries[index].event = event.encode_to_vec();
        forged::rechain(&mut entries);
        (entries, index as u64 + 1)
    };
    // What was moved, the rewritten log and the position changed, and what
    // verify must say there.
    type Rewrite<'a> = (&'a str, (Vec<v1::LogEntry>, u64), String);
    let rewrites: [Rewrite<'_>; 4] = [
        (
            "a submission under another key",
            rewrite(submitted, &|body| {
                if let v1::log_event::Body::ReportRecorded(r) = body {
                    r.report.as_mut().unwrap().client_report_id = "idf-7".into();
                }
            }),
            "does not hold over its statement to submit submission idf-7".into(),
        ),
        (
            "an amendment moved to another report",
            rewrite(amended, &|body| {
                if let v1::log_event::Body::ReportAmended(r) = body {
                    let report = r.report.as_mut().unwrap();
                    report.report_id = report.report_id.replace(&ids[0], &ids[1]);
                    report.report = Some(second.clone());
                }
            }),
            format!("does not hold over its statement to amend {} version 1", ids[1]),
        ),
        (
            "a retraction moved to another report",
            rewrite(retracted, &|body| {
                if let v1::log_event::Body::ReportRetracted(r) = body {
                    r.report_id = ids[1].clone();
                    r.version = 1;
                }
            }),
            format!("does not hold over its statement to retract {} version 1", ids[1]),
        ),
        (
            "a submission's signature on an amendment of the same content",
            rewrite(amended, &|body| {
                if let v1::log_event::Body::ReportAmended(r) = body {
                    r.report.as_mut().unwrap().signature = first_signature.clone();
                }
            }),
            format!("does not hold over its statement to amend {} version 1", ids[0]),
        ),
    ];
    for (what, (entries, position), found) in rewrites {
        let (ok, _, stderr) = verify(entries).await;
        assert!(!ok, "{what}: the rewritten log verifies");
        assert!(
            stderr.contains(&format!(
                "broken at position {position}: the signature of party idf {found}"
            )),
            "{what}: {stderr}"
        );
    }
}
