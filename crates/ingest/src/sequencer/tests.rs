//! The sequencer against real logs: grouping, idempotency, failures
//! and the answer bound.

use truce_proto::{
    convert::{Received, report_digest, report_from_wire},
    v1,
};

use std::time::{Duration, Instant};

use truce_domain::{IncidentId, Position, ReportId, Timestamp, event::RecordedEvent};
use truce_log::LogStore;
use truce_proto::{ServiceError, convert::event_from_wire};

use super::{submitter::answer_due, *};
use crate::testing::{DOWN_DELAY, FailingDisk, SHARED_ANSWER_WITHIN, Script, SharedLog, Trouble, wire_report};

fn submission(key: Option<&str>, wire: &v1::Report) -> Submission {
    Submission {
        client_report_id: key.map(|k| k.parse().unwrap()),
        report: report_from_wire(wire, "report", Received::Stored).unwrap(),
        digest: report_digest(wire),
        received_at: Timestamp(0),
        signature: None,
    }
}

fn started(dir: &std::path::Path) -> (Submitter, watch::Receiver<Head>) {
    let store = LogStore::open(dir).unwrap();
    let (head_tx, head_rx) = watch::channel(store.head());
    let (submitter, _thread) = start(Box::new(store), Rules::default(), head_tx, None).unwrap();
    (submitter, head_rx)
}

#[tokio::test]
async fn concurrent_duplicates_store_once_and_group_together() {
    let dir = tempfile::tempdir().unwrap();
    let (submitter, head) = started(dir.path());
    let first = wire_report("a gunman crossed");
    let second = wire_report("shots at the line");
    // Submitted together, these most likely share one batch; the
    // answers must be the same whether they do or not.
    let (a, b, c) = tokio::join!(
        submitter.submit(submission(Some("k1"), &first)),
        submitter.submit(submission(Some("k1"), &first)),
        submitter.submit(submission(Some("k2"), &second)),
    );
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    assert_eq!(a.report_id, b.report_id);
    assert!(a.replayed != b.replayed, "exactly one of the two is the original");
    assert_eq!(
        c.incident_id, a.incident_id,
        "same category, area and time: one incident"
    );
    assert_eq!(head.borrow().position, 2);

    let conflict = submitter.submit(submission(Some("k1"), &second)).await.unwrap_err();
    assert!(matches!(conflict, ServiceError::AlreadyExists(_)));
    assert_eq!(head.borrow().position, 2);
}

#[tokio::test]
async fn a_failed_sync_refuses_every_write_until_restarted_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open(dir.path()).unwrap();
    let (head_tx, head) = watch::channel(store.head());
    let (submitter, thread) = start(Box::new(FailingDisk(Box::new(store))), Rules::default(), head_tx, None).unwrap();
    let out_of_service = submitter.out_of_service();
    assert_eq!(*out_of_service.borrow(), None);

    let first = wire_report("shots at the line");
    let error = submitter.submit(submission(Some("k1"), &first)).await.unwrap_err();
    assert!(
        matches!(&error, ServiceError::Unavailable(why) if why.contains("could not be synced")),
        "{error:?}"
    );
    assert_eq!(head.borrow().position, 0, "readers never see what may not be on disk");
    let reason = out_of_service.borrow().clone().expect("out of service");
    assert!(reason.contains("storage is failing"), "{reason}");

    // Nothing more is appended, not even to a disk that took the last
    // write: what it holds is no longer known.
    let second = wire_report("a second crossing");
    let error = submitter.submit(submission(Some("k2"), &second)).await.unwrap_err();
    assert!(
        matches!(&error, ServiceError::Unavailable(why) if why.contains("storage is failing")),
        "{error:?}"
    );

    // Restarted over what the disk holds: the first report reached the
    // log before its sync failed, and its retry says so; the second
    // was never appended and is stored now, once.
    drop(submitter);
    thread.join().unwrap();
    let store = LogStore::open(dir.path()).unwrap();
    assert_eq!(store.head().position, 1);
    let (head_tx, head) = watch::channel(store.head());
    let (submitter, _thread) = start(Box::new(store), Rules::default(), head_tx, None).unwrap();
    let retried = submitter.submit(submission(Some("k1"), &first)).await.unwrap();
    assert!(retried.replayed, "the retry answers the stored report");
    let stored = submitter.submit(submission(Some("k2"), &second)).await.unwrap();
    assert!(!stored.replayed);
    assert_eq!(head.borrow().position, 2);
    assert_eq!(*submitter.out_of_service().borrow(), None);
}

/// A sequencer over an embedded log acting as a shared one.
fn started_shared(
    dir: &std::path::Path,
) -> (
    Submitter,
    watch::Receiver<Head>,
    std::sync::Arc<std::sync::Mutex<Script>>,
) {
    let (store, script) = SharedLog::new(Box::new(LogStore::open(dir).unwrap()));
    let (head_tx, head_rx) = watch::channel(store.head());
    let (submitter, _thread) = start(Box::new(store), Rules::default(), head_tx, None).unwrap();
    (submitter, head_rx, script)
}

#[tokio::test]
async fn an_unconfirmed_write_missing_from_the_log_is_answered_in_doubt_and_not_written_again() {
    let dir = tempfile::tempdir().unwrap();
    let (submitter, head, script) = started_shared(dir.path());
    script.lock().unwrap().next.push_back(Trouble::Lost);
    let report = wire_report("shots at the line");
    let error = submitter.submit(submission(Some("k1"), &report)).await.unwrap_err();
    assert!(
        matches!(&error, ServiceError::Unavailable(why) if why.contains("may or may not be recorded")),
        "{error:?}"
    );
    // It may still land: the sequencer does not append it again.
    assert_eq!(head.borrow().position, 0);
    let retried = submitter.submit(submission(Some("k1"), &report)).await.unwrap();
    assert!(!retried.replayed);
    assert_eq!(head.borrow().position, 1);
}

#[tokio::test]
async fn an_unconfirmed_write_found_in_the_log_is_acknowledged_once() {
    let dir = tempfile::tempdir().unwrap();
    let (submitter, head, script) = started_shared(dir.path());
    script.lock().unwrap().next.push_back(Trouble::Unconfirmed);
    let report = wire_report("shots at the line");
    let accepted = submitter.submit(submission(Some("k1"), &report)).await.unwrap();
    assert!(!accepted.replayed);
    assert_eq!(head.borrow().position, 1);
    let retried = submitter.submit(submission(Some("k1"), &report)).await.unwrap();
    assert!(retried.replayed);
    assert_eq!(retried.report_id, accepted.report_id);
    assert_eq!(head.borrow().position, 1);
}

#[tokio::test]
async fn callers_are_answered_within_the_bound_while_the_log_is_down_and_writes_resume_after() {
    let dir = tempfile::tempdir().unwrap();
    let (submitter, head, script) = started_shared(dir.path());
    script.lock().unwrap().down = true;
    let mut calls = tokio::task::JoinSet::new();
    for n in 0..20 {
        let submitter = submitter.clone();
        calls.spawn(async move {
            let started = std::time::Instant::now();
            let report = wire_report(&format!("report {n}"));
            let answer = submitter.submit(submission(None, &report)).await;
            (answer, started.elapsed())
        });
    }
    while let Some(call) = calls.join_next().await {
        let (answer, took) = call.unwrap();
        assert!(matches!(answer, Err(ServiceError::Unavailable(_))), "{answer:?}");
        // Each of the log's failures takes DOWN_DELAY; the first one
        // tells every caller past the bound.
        assert!(took < DOWN_DELAY + SHARED_ANSWER_WITHIN * 2, "a call took {took:?}");
    }
    script.lock().unwrap().down = false;
    let report = wire_report("after");
    let deadline = std::time::Instant::now() + 5 * DOWN_DELAY;
    let accepted = loop {
        match submitter.submit(submission(Some("after"), &report)).await {
            Ok(accepted) => break accepted,
            Err(ServiceError::Unavailable(_)) if std::time::Instant::now() < deadline => {}
            Err(error) => panic!("{error:?}"),
        }
    };
    assert_eq!(
        accepted.report_id,
        ReportId(Position(1)),
        "nothing was stored while down"
    );
    assert_eq!(head.borrow().position, 1);
}

#[tokio::test]
async fn an_unknown_incident_is_not_found_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (submitter, head) = started(dir.path());
    let mut wire = wire_report("about an incident that does not exist");
    wire.incident_id = "inc-7".into();
    let error = submitter.submit(submission(None, &wire)).await.unwrap_err();
    assert!(matches!(error, ServiceError::NotFound { kind: "incident", .. }));
    assert_eq!(head.borrow().position, 0);
}

#[tokio::test]
async fn state_is_rebuilt_from_the_log_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let opened = {
        let (submitter, _) = started(dir.path());
        submitter
            .submit(submission(Some("k1"), &wire_report("first")))
            .await
            .unwrap()
    };
    // The first sequencer stops once its submitter is dropped; wait for
    // it to release the log.
    let store = loop {
        match LogStore::open(dir.path()) {
            Ok(store) => break store,
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    };
    let (head_tx, _head) = watch::channel(store.head());
    let (submitter, _thread) = start(Box::new(store), Rules::default(), head_tx, None).unwrap();
    let joined = submitter
        .submit(submission(None, &wire_report("second")))
        .await
        .unwrap();
    assert_eq!(joined.incident_id, opened.incident_id);
    let replay = submitter
        .submit(submission(Some("k1"), &wire_report("first")))
        .await
        .unwrap();
    assert!(replay.replayed);
    assert_eq!(replay.report_id, opened.report_id);
}

/// Records one report in a new log in `dir` and stops; the store, once
/// released, and the incident the report opened.
async fn log_with_one_report(dir: &std::path::Path) -> (LogStore, IncidentId) {
    let opened = {
        let (submitter, _) = started(dir);
        submitter.submit(submission(None, &wire_report("first"))).await.unwrap()
    };
    loop {
        match LogStore::open(dir) {
            Ok(store) => return (store, opened.incident_id),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
}

#[tokio::test]
async fn summaries_folded_at_the_head_are_the_state_and_stale_ones_are_not() {
    // The summaries the view folded are taken as the grouping state
    // when they are as of the log's head: none given, a report that
    // would join the existing incident opens its own.
    let dir = tempfile::tempdir().unwrap();
    let (store, first) = log_with_one_report(dir.path()).await;
    let (head_tx, _head) = watch::channel(store.head());
    let folded = Folded {
        position: store.head().position,
        summaries: Vec::new(),
    };
    let (submitter, _thread) = start_from(Box::new(store), Rules::default(), head_tx, None, Some(folded)).unwrap();
    let second = submitter
        .submit(submission(None, &wire_report("second")))
        .await
        .unwrap();
    assert_ne!(second.incident_id, first);

    // Summaries of an earlier position are not: the log is folded.
    let dir = tempfile::tempdir().unwrap();
    let (store, first) = log_with_one_report(dir.path()).await;
    let (head_tx, _head) = watch::channel(store.head());
    let stale = Folded {
        position: store.head().position - 1,
        summaries: Vec::new(),
    };
    let (submitter, _thread) = start_from(Box::new(store), Rules::default(), head_tx, None, Some(stale)).unwrap();
    let second = submitter
        .submit(submission(None, &wire_report("second")))
        .await
        .unwrap();
    assert_eq!(second.incident_id, first);
}

/// A sequencer over `log`.
fn start_on(log: SharedLog) -> Submitter {
    let (head_tx, _head) = watch::channel(log.head());
    start(Box::new(log), Rules::default(), head_tx, None).unwrap().0
}

/// A report of `category` at Rafah: reports of one category group
/// together.
fn report_of(category: v1::Category, summary: &str) -> v1::Report {
    v1::Report {
        category: category as i32,
        ..wire_report(summary)
    }
}

fn crossing(summary: &str) -> v1::Report {
    report_of(v1::Category::LineCrossing, summary)
}

fn strike(summary: &str) -> v1::Report {
    report_of(v1::Category::AirStrike, summary)
}

/// The event `log` holds at `position`.
fn stored_event(log: &SharedLog, position: Position) -> RecordedEvent {
    event_from_wire(position.0, &log.stored(position.0).expect("stored")).unwrap()
}

/// Submits `report` with `key` until it is answered otherwise than
/// UNAVAILABLE, as a client does.
async fn submit_until_answered(submitter: &Submitter, key: &str, report: &v1::Report) -> Accepted {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match submitter.submit(submission(Some(key), report)).await {
            Ok(accepted) => return accepted,
            Err(ServiceError::Unavailable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("{key}: {error:?}"),
        }
    }
}

fn is_unavailable_saying(answer: &Result<Accepted, ServiceError>, words: &str) -> bool {
    matches!(answer, Err(ServiceError::Unavailable(why)) if why.contains(words))
}

#[tokio::test]
async fn settling_an_append_is_all_or_nothing_when_reads_fail_once_the_log_is_caught_up() {
    let dir = tempfile::tempdir().unwrap();
    let (log, script) = SharedLog::new(Box::new(LogStore::open(dir.path()).unwrap()));
    let (other, reader) = (log.writer(), log.writer());
    let a = start_on(log.bound_by(Duration::from_secs(5)));
    let first = a.submit(submission(Some("r0"), &crossing("r0"))).await.unwrap();

    // The sequencer is held up (looking a key up while the log is
    // down) while two reports queue, so they make one batch: an air
    // strike opening an incident, and a crossing joining the first.
    script.lock().unwrap().down = true;
    let held = {
        let a = a.clone();
        let mut wire = crossing("held");
        wire.incident_id = "inc-99".into();
        tokio::spawn(async move { a.submit(submission(Some("held"), &wire)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The air strike is stored and not confirmed, the crossing never
    // sent; then the log is down, so neither can be read back.
    script.lock().unwrap().next.push_back(Trouble::UnconfirmedThenDown);
    let opening = {
        let a = a.clone();
        tokio::spawn(async move { a.submit(submission(Some("r1"), &strike("r1"))).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let joining = {
        let a = a.clone();
        tokio::spawn(async move { a.submit(submission(Some("r2"), &crossing("r2"))).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    script.lock().unwrap().down = false;
    assert!(matches!(held.await.unwrap(), Err(ServiceError::NotFound { .. })));
    let (opening, joining) = (opening.await.unwrap(), joining.await.unwrap());
    assert!(
        is_unavailable_saying(&opening, "may or may not be recorded"),
        "{opening:?}"
    );
    assert!(is_unavailable_saying(&joining, "was not stored"), "{joining:?}");

    // Another writer adds a crossing to the first incident and an air
    // strike to the one the unconfirmed report opened.
    script.lock().unwrap().down = false;
    let b = start_on(other);
    let crossed = b.submit(submission(None, &crossing("r3"))).await.unwrap();
    let struck = b.submit(submission(None, &strike("r4"))).await.unwrap();
    let strikes = IncidentId(Position(2));
    assert_eq!((crossed.incident_id, struck.incident_id), (first.incident_id, strikes));

    // The next single read fails (a leader read timing out): settling
    // the batch needs none, and leaves the state as the log has it.
    script.lock().unwrap().failing_reads = 1;
    let fifth = submit_until_answered(&a, "r5", &crossing("r5")).await;
    let sixth = submit_until_answered(&a, "r6", &strike("r6")).await;
    script.lock().unwrap().failing_reads = 0;
    assert_eq!(fifth.incident_id, first.incident_id, "grouped into the first incident");
    assert_eq!(
        sixth.incident_id, strikes,
        "grouped into the incident the unconfirmed report opened"
    );
    let previous = |accepted: &Accepted| stored_event(&reader, accepted.report_id.0).previous_position();
    assert_eq!(
        previous(&fifth),
        Some(crossed.report_id.0),
        "linked to the other writer's event"
    );
    assert_eq!(previous(&sixth), Some(struck.report_id.0));

    // The unconfirmed report was stored: its retry says so. The one
    // never sent was not: its retry stores it, in the first incident.
    let retried = a.submit(submission(Some("r1"), &strike("r1"))).await.unwrap();
    assert!(retried.replayed);
    assert_eq!(retried.report_id, ReportId(Position(2)));
    let joined = a.submit(submission(Some("r2"), &crossing("r2"))).await.unwrap();
    assert!(!joined.replayed);
    assert_eq!(joined.incident_id, first.incident_id);
    assert_eq!(previous(&joined), Some(fifth.report_id.0));
}

#[tokio::test]
async fn an_unconfirmed_write_that_lands_later_is_found_by_its_retry_and_forks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (log, script) = SharedLog::new(Box::new(LogStore::open(dir.path()).unwrap()));
    let reader = log.writer();
    let a = start_on(log);
    script.lock().unwrap().next.push_back(Trouble::Late);
    let error = a.submit(submission(Some("k1"), &crossing("first"))).await.unwrap_err();
    assert!(
        matches!(&error, ServiceError::Unavailable(why) if why.contains("same client_report_id")),
        "{error:?}"
    );
    // It lands just before the next append, decided without it: that
    // is refused, and decided again after it, joining its incident.
    let second = a.submit(submission(Some("k2"), &crossing("second"))).await.unwrap();
    assert_eq!(script.lock().unwrap().conflicts, 1);
    assert_eq!(second.report_id, ReportId(Position(2)));
    assert_eq!(second.incident_id, IncidentId(Position(1)));
    assert_eq!(
        stored_event(&reader, Position(2)).previous_position(),
        Some(Position(1))
    );
    let retried = a.submit(submission(Some("k1"), &crossing("first"))).await.unwrap();
    assert!(retried.replayed);
    assert_eq!(retried.report_id, ReportId(Position(1)));
}

/// Submits `count` keyed reports to `submitter` at once; each answer
/// with how long it took.
async fn burst(
    submitter: &Submitter,
    prefix: &str,
    count: usize,
) -> Vec<(String, Result<Accepted, ServiceError>, Duration)> {
    let mut calls = tokio::task::JoinSet::new();
    for n in 0..count {
        let submitter = submitter.clone();
        let key = format!("{prefix}-{n}");
        calls.spawn(async move {
            let started = Instant::now();
            let answer = submitter.submit(submission(Some(&key), &crossing(&key))).await;
            (key, answer, started.elapsed())
        });
    }
    calls.join_all().await
}

#[tokio::test]
async fn callers_are_answered_within_the_bound_while_the_log_confirms_slowly() {
    let dir = tempfile::tempdir().unwrap();
    let (log, script) = SharedLog::new(Box::new(LogStore::open(dir.path()).unwrap()));
    let reader = log.writer();
    // Each entry confirmed after 150 ms: an append stops after the
    // first (half the bound), so no batch keeps up.
    script.lock().unwrap().ack_delay = Duration::from_millis(150);
    let a = start_on(log);
    let calls = burst(&a, "slow", 20).await;
    let longest = calls.iter().map(|(_, _, took)| *took).max().unwrap();
    assert!(
        longest < SHARED_ANSWER_WITHIN * 7 / 4 + Duration::from_millis(150),
        "a call took {longest:?}"
    );
    let acknowledged = calls.iter().filter(|(_, answer, _)| answer.is_ok()).count();
    assert!(acknowledged > 0, "some are stored meanwhile");
    for (key, answer, _) in &calls {
        assert!(
            answer.is_ok() || is_unavailable_saying(answer, "may or may not be recorded"),
            "{key}: {answer:?}"
        );
    }
    // Retried once the log is quick again, each key is one report.
    script.lock().unwrap().ack_delay = Duration::ZERO;
    let mut ids = std::collections::BTreeSet::new();
    for (key, answer, _) in &calls {
        let id = match answer {
            Ok(accepted) => accepted.report_id,
            Err(_) => submit_until_answered(&a, key, &crossing(key)).await.report_id,
        };
        assert!(ids.insert(id), "{key} answered with another key's report");
    }
    assert!(reader.stored(21).is_none(), "nothing stored twice");
}

#[tokio::test]
async fn callers_queued_behind_a_busy_log_that_keeps_up_are_not_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (log, script) = SharedLog::new(Box::new(LogStore::open(dir.path()).unwrap()));
    // Each batch takes a third of the bound to append.
    script.lock().unwrap().append_delay = SHARED_ANSWER_WITHIN / 3;
    let a = start_on(log);
    // Four batches queued at once: the last callers wait for all four,
    // longer than the bound, while each batch keeps up.
    let calls = burst(&a, "busy", 4 * MAX_SHARED_BATCH - 10).await;
    let longest = calls.iter().map(|(_, _, took)| *took).max().unwrap();
    let refused: Vec<_> = calls.iter().filter(|(_, answer, _)| answer.is_err()).collect();
    assert!(refused.is_empty(), "{} refused, e.g. {:?}", refused.len(), refused[0]);
    assert!(
        longest > SHARED_ANSWER_WITHIN,
        "waited {longest:?}: the test needs longer"
    );
}

#[tokio::test]
async fn two_writers_contending_acknowledge_every_caller_and_group_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let (log, script) = SharedLog::new(Box::new(LogStore::open(dir.path()).unwrap()));
    let other = log.writer();
    let writers = [start_on(log), start_on(other)];
    let mut calls = tokio::task::JoinSet::new();
    for n in 0..400 {
        let submitter = writers[n % 2].clone();
        calls.spawn(async move {
            let key = format!("both-{n}");
            submitter.submit(submission(Some(&key), &crossing(&key))).await
        });
        if n % 20 == 19 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let answers: Vec<Accepted> = calls
        .join_all()
        .await
        .into_iter()
        .map(|answer| answer.expect("acknowledged"))
        .collect();
    assert!(script.lock().unwrap().conflicts > 0, "the writers contended");
    let incidents: std::collections::BTreeSet<_> = answers.iter().map(|a| a.incident_id).collect();
    assert_eq!(incidents.len(), 1, "each writer saw the other's reports: one incident");
    let ids: std::collections::BTreeSet<_> = answers.iter().map(|a| a.report_id).collect();
    assert_eq!(ids.len(), 400);
}

#[test]
fn a_batch_counts_as_progress_only_in_time_and_at_pace() {
    let within = Duration::from_secs(1);
    let ms = Duration::from_millis;
    assert!(
        kept_up(ms(300), MAX_SHARED_BATCH, within),
        "a busy log: a full batch in 0.3 s"
    );
    assert!(kept_up(ms(5), 1, within));
    assert!(kept_up(ms(700), 0, within), "nothing to store, everyone answered");
    assert!(
        !kept_up(ms(800), MAX_SHARED_BATCH, within),
        "too long for the callers behind it"
    );
    assert!(
        !kept_up(ms(450), 1, within),
        "0.45 s an entry: a queue of callers behind it would wait a minute"
    );
}

#[test]
fn a_caller_is_owed_an_answer_the_bound_past_its_start_or_the_last_progress() {
    let within = Duration::from_secs(1);
    let now = Instant::now();
    let earlier = now - Duration::from_secs(5);
    assert_eq!(answer_due(now, earlier, within), now + within);
    let later = now + Duration::from_millis(500);
    assert_eq!(answer_due(now, later, within), later + within);
}

/// A client whose call timed out on one ingest replica retries on another
/// that has not yet seen the first one's append: the retry is answered as
/// the original, and the key cannot be reused for other content there.
#[tokio::test]
async fn a_retry_on_a_writer_behind_the_log_is_answered_as_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _script) = SharedLog::new(Box::new(LogStore::open(dir.path()).unwrap()));
    let behind = log.writer();
    let ahead = start_on(log);
    let behind = start_on(behind);
    let report = crossing("shots at the line");
    let original = ahead.submit(submission(Some("k-1"), &report)).await.unwrap();
    ahead.submit(submission(Some("k-2"), &strike("later"))).await.unwrap();

    let retried = behind.submit(submission(Some("k-1"), &report)).await.unwrap();
    assert_eq!(
        retried,
        Accepted {
            replayed: true,
            ..original.clone()
        }
    );
    let reused = behind
        .submit(submission(Some("k-1"), &crossing("other content")))
        .await
        .unwrap_err();
    assert!(matches!(reused, ServiceError::AlreadyExists(_)), "{reused:?}");
    let fresh = behind.submit(submission(Some("k-3"), &report)).await.unwrap();
    assert_eq!(
        fresh.report_id,
        ReportId(Position(3)),
        "appended after what the other wrote"
    );
}
