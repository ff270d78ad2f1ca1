//! Reports are never edited in place or deleted: a reporter amends or
//! retracts its own report, each a new event; the incident shows the
//! current versions and keeps the history, across restarts.

use tonic::Code;
use truce_auth::Role;
use truce_proto::v1::{self, subscribe_request::Start, subscribe_response::Kind};
use truce_tests::{
    Pair, crossing_report, request,
    secure::{secure_pair, with_token},
    stream,
};

fn killed(by: &str, low: u32, high: u32) -> v1::CasualtyClaim {
    v1::CasualtyClaim {
        group: v1::CasualtyGroup::Combatants as i32,
        killed: Some(v1::CountRange { low, best: None, high }),
        injured: None,
        claimed_by: by.into(),
    }
}

fn report_by(party: &str, claim: v1::CasualtyClaim) -> v1::Report {
    v1::Report {
        reporting_party: party.into(),
        casualties: vec![claim],
        attributions: Vec::new(),
        ..crossing_report()
    }
}

fn amend(report_id: &str, report: v1::Report, reason: &str) -> v1::AmendReportRequest {
    v1::AmendReportRequest {
        report_id: report_id.into(),
        report: Some(report),
        reason: reason.into(),
        signature: Vec::new(),
        ..Default::default()
    }
}

fn retract(report_id: &str, reason: &str) -> v1::RetractReportRequest {
    v1::RetractReportRequest {
        report_id: report_id.into(),
        reason: reason.into(),
        ..Default::default()
    }
}

/// The IDF and Hamas report the same crossing with different figures: one
/// incident, two reports. Returns the IDF's report and both answers.
async fn two_claims(
    ingest: &mut v1::ingest_service_client::IngestServiceClient<tonic::transport::Channel>,
    idf: &str,
    hamas: &str,
) -> (v1::Report, v1::SubmitReportResponse, v1::SubmitReportResponse) {
    let idf_report = report_by("idf", killed("idf", 1, 1));
    let first = ingest
        .submit_report(with_token(idf, request("a", idf_report.clone())))
        .await
        .expect("idf report")
        .into_inner();
    let second = ingest
        .submit_report(with_token(
            hamas,
            request("b", report_by("hamas", killed("hamas", 3, 4))),
        ))
        .await
        .expect("hamas report")
        .into_inner();
    (idf_report, first, second)
}

async fn incident(pair: &Pair, token: &str, id: &str, at: u64) -> v1::Incident {
    pair.query_client()
        .await
        .get_incident(with_token(
            token,
            v1::GetIncidentRequest {
                incident_id: id.into(),
                min_position: at,
            },
        ))
        .await
        .expect("get incident")
        .into_inner()
        .incident
        .expect("incident")
}

fn range(range: &Option<v1::CountRange>) -> (u32, u32) {
    let range = range.as_ref().expect("a range");
    (range.low, range.high)
}

#[tokio::test]
async fn amendments_and_retractions_are_events_and_history_is_kept() {
    let s = secure_pair().await;
    let [hamas] =
        <[String; 1]>::try_from(s.add_principals(&[("hamas-desk", "hamas", Role::Reporter)]).await).expect("one token");
    let mut ingest = s.pair.ingest_client().await;
    let mut query = s.pair.query_client().await;

    let (idf_report, first, second) = two_claims(&mut ingest, &s.idf, &hamas).await;
    assert_eq!(second.incident_id, first.incident_id, "same event, same incident");
    let mut changes = query
        .subscribe(with_token(
            &s.observer,
            stream::request(
                &format!("id = \"{}\"", first.incident_id),
                Start::AfterPosition(second.position),
            ),
        ))
        .await
        .expect("subscribe")
        .into_inner();
    stream::next(&mut changes).await.expect("subscribed");

    // The IDF corrects its figure.
    let mut corrected = idf_report.clone();
    corrected.casualties = vec![killed("idf", 2, 2)];
    let amended = ingest
        .amend_report(with_token(
            &s.idf,
            amend(&first.report_id, corrected.clone(), "second body found"),
        ))
        .await
        .expect("amend")
        .into_inner();
    let current = amended.report.expect("report");
    assert_eq!((current.version, current.version_position), (2, amended.position));
    assert_eq!(current.amendment_reason, "second body found");
    assert_eq!(current.report.as_ref(), Some(&corrected));
    let summary = amended.incident.expect("incident");
    assert_eq!(range(&summary.killed), (2, 4), "claims refolded over current versions");
    assert_eq!(summary.report_count, 2);

    // Hamas may not touch the IDF's report, nor speak for the IDF.
    let status = ingest
        .amend_report(with_token(&hamas, amend(&first.report_id, corrected.clone(), "no")))
        .await
        .expect_err("another party's report");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let status = ingest
        .retract_report(with_token(&hamas, retract(&first.report_id, "no")))
        .await
        .expect_err("another party's report");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let status = ingest
        .retract_report(with_token(&s.observer, retract(&first.report_id, "no")))
        .await
        .expect_err("observers do not write");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    // Hamas withdraws its own report.
    let retracted = ingest
        .retract_report(with_token(&hamas, retract(&second.report_id, "figures unverified")))
        .await
        .expect("retract")
        .into_inner();
    let withdrawn = retracted.report.expect("report");
    let retraction = withdrawn.retraction.expect("marked retracted");
    assert_eq!(
        (retraction.position, retraction.reason.as_str()),
        (retracted.position, "figures unverified")
    );
    let summary = retracted.incident.expect("incident");
    assert_eq!(summary.report_count, 1);
    assert_eq!(range(&summary.killed), (2, 2), "a retracted claim no longer counts");
    assert_eq!(summary.reporters, vec!["idf".to_owned()]);

    // Twice is refused; so is amending a retracted report; and bad input.
    let status = ingest
        .retract_report(with_token(&hamas, retract(&second.report_id, "again")))
        .await
        .expect_err("twice");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let status = ingest
        .amend_report(with_token(
            &hamas,
            amend(&second.report_id, report_by("hamas", killed("hamas", 5, 5)), "x"),
        ))
        .await
        .expect_err("retracted");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    // A party cannot tell another party's report from one that does not
    // exist: both are refused alike, before any lookup says which.
    let unknown = ingest
        .amend_report(with_token(&s.idf, amend("rpt-999", corrected.clone(), "x")))
        .await
        .expect_err("unknown");
    let others = ingest
        .amend_report(with_token(&s.idf, amend(&second.report_id, corrected.clone(), "x")))
        .await
        .expect_err("another party's");
    assert_eq!(unknown.code(), Code::PermissionDenied, "{unknown:?}");
    assert_eq!(others.code(), Code::PermissionDenied, "{others:?}");
    assert_eq!(
        unknown.message().replace("rpt-999", "ID"),
        others.message().replace(&second.report_id, "ID")
    );
    let status = ingest
        .amend_report(with_token(&s.idf, amend(&first.report_id, corrected.clone(), "")))
        .await
        .expect_err("no reason");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(truce_tests::violations(&status)[0].0, "reason");
    let mut elsewhere = corrected.clone();
    elsewhere.incident_id = "inc-999".into();
    let status = ingest
        .amend_report(with_token(&s.idf, amend(&first.report_id, elsewhere, "move")))
        .await
        .expect_err("an amendment stays in its incident");
    assert_eq!(truce_tests::violations(&status)[0].0, "report.incident_id");

    // Subscribers saw exactly the two revisions, in order.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        if let Kind::Change(change) = stream::next(&mut changes).await.expect("change") {
            seen.push((change.kind(), change.report_id, change.position));
        }
    }
    assert_eq!(
        seen,
        vec![
            (v1::ChangeKind::ReportAmended, first.report_id.clone(), amended.position),
            (
                v1::ChangeKind::ReportRetracted,
                second.report_id.clone(),
                retracted.position
            ),
        ]
    );

    // The incident shows current versions and keeps the earlier one, and
    // so it does after a restart, rebuilt from the log.
    let check = |incident: v1::Incident| {
        let versions: Vec<(String, u32, bool)> = incident
            .reports
            .iter()
            .map(|r| (r.report_id.clone(), r.version, r.retraction.is_some()))
            .collect();
        assert_eq!(
            versions,
            vec![(first.report_id.clone(), 2, false), (second.report_id.clone(), 1, true)]
        );
        assert_eq!(incident.earlier_versions.len(), 1);
        assert_eq!(incident.earlier_versions[0].version, 1);
        assert_eq!(incident.earlier_versions[0].report.as_ref(), Some(&idf_report));
        let claimants: Vec<&str> = incident.casualties.iter().map(|c| c.claimed_by.as_str()).collect();
        assert_eq!(claimants, vec!["idf"], "only current, unretracted claims");
    };
    check(incident(&s.pair, &s.observer, &first.incident_id, retracted.position).await);
    let report = query
        .get_report(with_token(
            &s.observer,
            v1::GetReportRequest {
                report_id: first.report_id.clone(),
                min_position: 0,
            },
        ))
        .await
        .expect("get report")
        .into_inner();
    assert_eq!(report.report.expect("current").version, 2);
    assert_eq!(report.earlier_versions.len(), 1);

    s.pair.stop().await;
    let pair = Pair::start_full(
        truce_ingest::IngestConfig {
            data_dir: s.dir.path().to_owned(),
            ..Default::default()
        },
        truce_query::QuerySettings::default(),
        truce_serve::auth::AuthMode::Tokens(s.file.clone()),
    )
    .await;
    check(incident(&pair, &s.observer, &first.incident_id, retracted.position).await);
    // The sequencer rebuilt its state too: a further amendment builds on
    // version 2.
    corrected.summary.push_str(" Both were armed.");
    let again = pair
        .ingest_client()
        .await
        .amend_report(with_token(&s.idf, amend(&first.report_id, corrected, "detail")))
        .await
        .expect("amend after restart")
        .into_inner();
    assert_eq!(again.report.expect("report").version, 3);
    assert_eq!(again.incident.expect("incident").report_count, 1);
    pair.stop().await;
}

/// A subscriber replaying the log receives every change exactly as live
/// subscribers received it, for every kind of event, with and without a
/// filter, departures included.
#[tokio::test]
async fn replayed_changes_are_exactly_the_live_ones_of_every_kind() {
    let s = secure_pair().await;
    let [hamas, egypt] = <[String; 2]>::try_from(
        s.add_principals(&[
            ("hamas-desk", "hamas", Role::Reporter),
            ("egypt-1", "egypt", Role::Monitor),
        ])
        .await,
    )
    .expect("two tokens");
    let mut ingest = s.pair.ingest_client().await;
    let mut query = s.pair.query_client().await;
    const FILTER: &str = "status = REPORTED";
    let mut subscribe = async |filter: &str, start: Start| {
        let mut changes = query
            .subscribe(with_token(&s.observer, stream::request(filter, start)))
            .await
            .expect("subscribe")
            .into_inner();
        match stream::next(&mut changes).await.expect("subscribed") {
            Kind::Subscribed(subscribed) => (changes, subscribed.position),
            other => panic!("expected Subscribed, got {other:?}"),
        }
    };
    let (mut live_all, start) = subscribe("", Start::FromNow(true)).await;
    let (mut live_filtered, _) = subscribe(FILTER, Start::AfterPosition(start)).await;

    let (idf_report, first, second) = two_claims(&mut ingest, &s.idf, &hamas).await;
    let mut corrected = idf_report;
    corrected.casualties = vec![killed("idf", 2, 2)];
    ingest
        .amend_report(with_token(
            &s.idf,
            amend(&first.report_id, corrected, "second body found"),
        ))
        .await
        .expect("amend");
    ingest
        .retract_report(with_token(&hamas, retract(&second.report_id, "figures unverified")))
        .await
        .expect("retract");
    let reviewed = ingest
        .review_incident(with_token(
            &egypt,
            v1::ReviewIncidentRequest {
                incident_id: first.incident_id.clone(),
                status: v1::IncidentStatus::UnderReview as i32,
                finding: "Both sides' figures are being checked against hospital records.".into(),
                responsible_party: String::new(),
            },
        ))
        .await
        .expect("review")
        .into_inner();
    let last = reviewed.position;

    let live_all = stream::messages_through(&mut live_all, last).await;
    let live_filtered = stream::messages_through(&mut live_filtered, last).await;
    let (mut replay_all, _) = subscribe("", Start::AfterPosition(start)).await;
    let (mut replay_filtered, _) = subscribe(FILTER, Start::AfterPosition(start)).await;
    let replay_all = stream::messages_through(&mut replay_all, last).await;
    let replay_filtered = stream::messages_through(&mut replay_filtered, last).await;

    let kinds: Vec<v1::ChangeKind> = live_all
        .iter()
        .filter_map(|kind| match kind {
            Kind::Change(c) => Some(c.kind()),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            v1::ChangeKind::IncidentOpened,
            v1::ChangeKind::ReportAdded,
            v1::ChangeKind::ReportAmended,
            v1::ChangeKind::ReportRetracted,
            v1::ChangeKind::Reviewed,
        ]
    );
    assert!(
        matches!(live_filtered.last(), Some(Kind::LeftFilter(c)) if c.position == last),
        "the review took the incident out of the filter: {live_filtered:?}"
    );
    assert_eq!(replay_all, live_all);
    assert_eq!(replay_filtered, live_filtered);
    s.pair.stop().await;
}

/// Everything an observer can read: every incident and report (with
/// earlier versions), listings with and without filters, and the counts,
/// all at `at`.
async fn everything(pair: &Pair, token: &str, at: u64) -> Vec<String> {
    let mut query = pair.query_client().await;
    let mut seen = Vec::new();
    for filter in [
        "",
        "reporter = \"hamas\"",
        "status = UNDER_REVIEW",
        "category = AIR_STRIKE",
    ] {
        let listed = query
            .list_incidents(with_token(
                token,
                v1::ListIncidentsRequest {
                    filter: filter.into(),
                    min_position: at,
                    ..Default::default()
                },
            ))
            .await
            .expect("list")
            .into_inner();
        seen.push(format!("{filter}: {listed:?}"));
        if !filter.is_empty() {
            continue;
        }
        for summary in &listed.incidents {
            let found = incident(pair, token, &summary.incident_id, at).await;
            for report in &found.reports {
                let got = query
                    .get_report(with_token(
                        token,
                        v1::GetReportRequest {
                            report_id: report.report_id.clone(),
                            min_position: at,
                        },
                    ))
                    .await
                    .expect("get report")
                    .into_inner();
                seen.push(format!("{got:?}"));
            }
            seen.push(format!("{found:?}"));
        }
    }
    let counts = query
        .summarize(with_token(
            token,
            v1::SummarizeRequest {
                min_position: at,
                ..Default::default()
            },
        ))
        .await
        .expect("summarize")
        .into_inner();
    seen.push(format!("{counts:?}"));
    seen
}

/// A restart builds the view from the log with the reports kept encoded,
/// and the sequencer's grouping state from the view's summaries: every
/// answer is the one given before, and writes after it build on the same
/// state, amending and retracting reports read at start.
#[tokio::test]
async fn a_restarted_pair_answers_as_before_and_builds_on_the_same_state() {
    let s = secure_pair().await;
    let [hamas, egypt] = <[String; 2]>::try_from(
        s.add_principals(&[
            ("hamas-desk", "hamas", Role::Reporter),
            ("egypt-monitor", "egypt", Role::Monitor),
        ])
        .await,
    )
    .expect("two tokens");
    let mut ingest = s.pair.ingest_client().await;
    let (idf_report, first, second) = two_claims(&mut ingest, &s.idf, &hamas).await;
    let mut strike = crossing_report();
    strike.category = v1::Category::AirStrike as i32;
    let other = ingest
        .submit_report(with_token(&s.idf, request("c", strike)))
        .await
        .expect("another incident")
        .into_inner();
    assert_ne!(other.incident_id, first.incident_id);
    let mut corrected = idf_report.clone();
    corrected.casualties = vec![killed("idf", 2, 2)];
    ingest
        .amend_report(with_token(
            &s.idf,
            amend(&first.report_id, corrected.clone(), "recount"),
        ))
        .await
        .expect("amend");
    ingest
        .retract_report(with_token(&hamas, retract(&second.report_id, "unverified")))
        .await
        .expect("retract");
    let reviewed = ingest
        .review_incident(with_token(
            &egypt,
            v1::ReviewIncidentRequest {
                incident_id: first.incident_id.clone(),
                status: v1::IncidentStatus::ConfirmedBreach as i32,
                finding: "on camera".into(),
                responsible_party: "hamas".into(),
            },
        ))
        .await
        .expect("review")
        .into_inner();
    let before = everything(&s.pair, &s.observer, reviewed.position).await;

    s.pair.stop().await;
    let pair = Pair::start_full(
        truce_ingest::IngestConfig {
            data_dir: s.dir.path().to_owned(),
            ..Default::default()
        },
        truce_query::QuerySettings::default(),
        truce_serve::auth::AuthMode::Tokens(s.file.clone()),
    )
    .await;
    assert_eq!(everything(&pair, &s.observer, reviewed.position).await, before);

    // A report of the same crossing joins the open incident; the IDF
    // amends the report read at start, then retracts it.
    let mut ingest = pair.ingest_client().await;
    let joined = ingest
        .submit_report(with_token(&s.idf, request("d", idf_report.clone())))
        .await
        .expect("report after restart")
        .into_inner();
    assert_eq!(joined.incident_id, first.incident_id, "grouped as before the restart");
    corrected.casualties = vec![killed("idf", 3, 3)];
    let amended = ingest
        .amend_report(with_token(
            &s.idf,
            amend(&first.report_id, corrected, "another recount"),
        ))
        .await
        .expect("amend after restart")
        .into_inner();
    assert_eq!(amended.report.expect("report").version, 3);
    let retracted = ingest
        .retract_report(with_token(&s.idf, retract(&first.report_id, "withdrawn")))
        .await
        .expect("retract after restart")
        .into_inner();
    let found = incident(&pair, &s.observer, &first.incident_id, retracted.position).await;
    let versions: Vec<(String, u32, bool)> = found
        .reports
        .iter()
        .map(|r| (r.report_id.clone(), r.version, r.retraction.is_some()))
        .collect();
    assert_eq!(
        versions,
        vec![
            (first.report_id.clone(), 3, true),
            (second.report_id.clone(), 1, true),
            (joined.report_id.clone(), 1, false),
        ]
    );
    let earlier: Vec<u32> = found.earlier_versions.iter().map(|r| r.version).collect();
    assert_eq!(earlier, vec![1, 2]);
    assert_eq!(found.reviews.len(), 1);
    pair.stop().await;
}
