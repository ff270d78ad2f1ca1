//! The decisions against an in-memory record that takes each decided event
//! as the log would.

use std::{collections::HashMap, convert::Infallible};

use super::*;
use crate::{
    ReportId,
    ids::ClientReportId,
    incident::IncidentStatus,
    report::{Report, Zone},
    testing::report_at,
};

/// What is recorded: events at positions 1.., summaries, keys.
#[derive(Default)]
struct Ledger {
    events: Vec<RecordedEvent>,
    index: IncidentIndex,
    keys: HashMap<String, Position>,
    rules: Rules,
}

impl Record for Ledger {
    type Error = Infallible;
    fn incidents(&self) -> &IncidentIndex {
        &self.index
    }
    fn event(&self, position: Position) -> Result<Option<RecordedEvent>, Infallible> {
        Ok(position
            .0
            .checked_sub(1)
            .and_then(|i| self.events.get(i as usize))
            .cloned())
    }
    fn keyed(&self, key: &str) -> Result<Option<RecordedEvent>, Infallible> {
        Ok(self.keys.get(key).and_then(|&at| self.event(at).ok().flatten()))
    }
}

impl Ledger {
    fn stamp(&self) -> Stamp {
        Stamp {
            position: Position(self.events.len() as u64 + 1),
            recorded_at: Timestamp(1_000 + self.events.len() as i64),
        }
    }

    /// Decides `command` and records what it decided.
    fn run(&mut self, command: Command) -> Result<Decision, Refusal<Infallible>> {
        let key = match &command {
            Command::Report(submission) => submission.idempotency_key(),
            _ => None,
        };
        let decision = decide(command, self.stamp(), &self.rules, self)?;
        if let Decision::Record { event, .. } = &decision {
            self.index.upsert(std::sync::Arc::clone(event.shared_incident()));
            if let Some(key) = key {
                self.keys.insert(key, event.position);
            }
            self.events.push(event.clone());
        }
        Ok(decision)
    }

    fn accepted(&mut self, submission: Submission) -> Accepted {
        match self.run(Command::Report(submission)) {
            Ok(Decision::Record {
                outcome: Outcome::Accepted(accepted),
                ..
            }) => accepted,
            other => panic!("not recorded: {other:?}"),
        }
    }
}

fn report(party: &str, summary: &str) -> Report {
    let mut report = report_at(1, |d| d.in_area("rafah")).report;
    report.reporting_party = party.parse().unwrap();
    report.summary = summary.to_owned();
    report
}

fn submission(report: Report, key: Option<&str>, digest: u8) -> Submission {
    Submission {
        client_report_id: key.map(|k| k.parse::<ClientReportId>().unwrap()),
        report,
        digest: [digest; 32],
        received_at: Timestamp(5),
        signature: None,
    }
}

fn rejection(refusal: Result<Decision, Refusal<Infallible>>) -> Rejection {
    match refusal {
        Err(Refusal::Rejected(rejection)) => rejection,
        other => panic!("not rejected: {other:?}"),
    }
}

fn amendment(of: ReportId, report: Report, by: &str, replaces: Option<u32>) -> Command {
    Command::Amend(Amendment {
        report_id: of,
        report,
        reason: "corrected".into(),
        received_at: Timestamp(9),
        signature: None,
        replaces_version: replaces,
        by: Some(by.parse().unwrap()),
    })
}

fn retraction(of: ReportId, by: &str) -> Command {
    Command::Retract(Withdrawal {
        report_id: of,
        reason: "withdrawn".into(),
        signature: None,
        replaces_version: None,
        by: Some(by.parse().unwrap()),
    })
}

#[test]
fn reports_of_the_same_event_group_and_a_named_incident_must_exist() {
    let mut ledger = Ledger::default();
    let first = ledger.accepted(submission(report("idf", "shots"), None, 1));
    assert!(first.opened_incident);
    let second = ledger.accepted(submission(report("hamas", "shots"), None, 2));
    assert_eq!((second.incident_id, second.opened_incident), (first.incident_id, false));

    let mut elsewhere = report("hamas", "shots");
    elsewhere.incident_id = Some(IncidentId(Position(77)));
    let refused = rejection(ledger.run(Command::Report(submission(elsewhere, None, 3))));
    assert_eq!(
        refused,
        Rejection::NotFound {
            kind: "incident",
            id: IncidentId(Position(77)).to_string()
        }
    );
    assert_eq!(ledger.events.len(), 2, "a refusal records nothing");
}

#[test]
fn a_retry_with_the_same_key_is_answered_as_before_and_a_reused_key_is_refused() {
    let mut ledger = Ledger::default();
    let first = ledger.accepted(submission(report("idf", "shots"), Some("k-1"), 1));
    let again = ledger.run(Command::Report(submission(report("idf", "shots"), Some("k-1"), 1)));
    assert_eq!(
        again,
        Ok(Decision::Repeat {
            of: Position(1),
            accepted: Accepted {
                replayed: true,
                ..first
            }
        })
    );
    let reused = ledger.run(Command::Report(submission(report("idf", "other"), Some("k-1"), 2)));
    assert_eq!(rejection(reused), Rejection::KeyReused);
    // Another party's key of the same name is its own.
    ledger.accepted(submission(report("hamas", "shots"), Some("k-1"), 2));
    assert_eq!(ledger.events.len(), 2);
}

#[test]
fn only_the_reporting_party_revises_and_others_cannot_tell_the_report_exists() {
    let mut ledger = Ledger::default();
    let mine = ledger.accepted(submission(report("idf", "shots"), None, 1)).report_id;
    let by_other = rejection(ledger.run(amendment(mine, report("idf", "none"), "hamas", None)));
    let missing = rejection(ledger.run(amendment(ReportId(Position(40)), report("hamas", "x"), "hamas", None)));
    let words = |r: Rejection| match r {
        Rejection::NotPermitted(why) => why.replace(&mine.to_string(), "ID").replace("rpt-40", "ID"),
        other => panic!("{other:?}"),
    };
    assert_eq!(words(by_other), words(missing), "the same answer either way");
    assert!(matches!(
        rejection(ledger.run(retraction(mine, "hamas"))),
        Rejection::NotPermitted(_)
    ));
    assert_eq!(ledger.events.len(), 1);
}

#[test]
fn an_amendment_keeps_party_and_incident_and_applies_to_the_current_version_only() {
    let mut ledger = Ledger::default();
    let id = ledger.accepted(submission(report("idf", "shots"), None, 1)).report_id;
    let refused = rejection(ledger.run(amendment(id, report("hamas", "shots"), "idf", None)));
    assert!(
        matches!(&refused, Rejection::Invalid(v) if v.field == "report.reporting_party"),
        "{refused:?}"
    );

    let Ok(Decision::Record {
        outcome: Outcome::Revised(revised),
        ..
    }) = ledger.run(amendment(id, report("idf", "two shots"), "idf", Some(1)))
    else {
        panic!("amendment refused")
    };
    assert_eq!(
        (revised.report.version, revised.report.report.summary.as_str()),
        (2, "two shots")
    );
    let stale = rejection(ledger.run(amendment(id, report("idf", "three"), "idf", Some(1))));
    assert!(
        matches!(&stale, Rejection::Stale(why) if why.contains("at version 2, not 1")),
        "{stale:?}"
    );
}

#[test]
fn a_retracted_report_is_kept_marked_no_longer_counts_and_cannot_be_revised_again() {
    let mut ledger = Ledger::default();
    let id = ledger.accepted(submission(report("idf", "shots"), None, 1)).report_id;
    ledger.accepted(submission(report("hamas", "shots"), None, 2));
    let Ok(Decision::Record {
        outcome: Outcome::Revised(revised),
        ..
    }) = ledger.run(retraction(id, "idf"))
    else {
        panic!("retraction refused")
    };
    assert_eq!(
        revised.report.retraction.as_ref().map(|r| r.position),
        Some(Position(3))
    );
    assert_eq!(revised.incident.report_count, 1, "no longer counted in the incident");
    assert_eq!(revised.report.report.summary, "shots", "kept, marked retracted");
    let again = rejection(ledger.run(retraction(id, "idf")));
    assert!(
        matches!(&again, Rejection::Stale(why) if why.contains("was retracted at position 3")),
        "{again:?}"
    );
}

#[test]
fn a_review_follows_the_quorum_and_a_reporting_mediator_may_not_rule() {
    let mut ledger = Ledger::default();
    let incident = ledger
        .accepted(submission(report("egypt", "shots"), None, 1))
        .incident_id;
    let review = |party: &str| {
        Command::Review(crate::review::Review {
            incident_id: incident,
            reviewer: format!("{party}-monitor"),
            reviewer_party: party.parse().unwrap(),
            status: IncidentStatus::Disputed,
            finding: "unclear".into(),
            responsible: None,
        })
    };
    assert!(matches!(
        rejection(ledger.run(review("egypt"))),
        Rejection::NotPermitted(_)
    ));
    ledger.run(review("qatar")).unwrap();
    let Ok(Decision::Record {
        outcome: Outcome::Reviewed(reviewed),
        ..
    }) = ledger.run(review("usa"))
    else {
        panic!("review refused")
    };
    assert_eq!(reviewed.incident.status, IncidentStatus::Disputed);
    assert!(matches!(rejection(ledger.run(review("usa"))), Rejection::Stale(_)));
}

#[test]
fn the_zone_is_derived_from_the_geometry_in_force_not_taken_from_the_reporter() {
    let geometry = r#"{"type":"FeatureCollection","features":[
      {"type":"Feature","properties":{"zone":"ISRAELI_CONTROLLED"},
       "geometry":{"type":"Polygon","coordinates":[[[34.0,31.0],[34.5,31.0],[34.5,32.0],[34.0,32.0],[34.0,31.0]]]}},
      {"type":"Feature","properties":{"zone":"PALESTINIAN_CONTROLLED"},
       "geometry":{"type":"Polygon","coordinates":[[[34.5,31.0],[35.0,31.0],[35.0,32.0],[34.5,32.0],[34.5,31.0]]]}}]}"#;
    let mut ledger = Ledger {
        rules: Rules {
            demarcation: Some(crate::geo::Demarcation::from_geojson(geometry).unwrap()),
            ..Rules::default()
        },
        ..Ledger::default()
    };
    let at = |lat, lon| {
        let mut placed = report_at(1, |d| d.at_point(lat, lon)).report;
        placed.summary = "shots".into();
        placed
    };
    let id = ledger.accepted(submission(at(31.5, 34.8), None, 1)).report_id;
    let zone = |ledger: &Ledger, position: u64| match &ledger.events[position as usize - 1].body {
        crate::event::EventBody::ReportRecorded(r) => r.report.derived_zone,
        crate::event::EventBody::ReportAmended(r) => r.report.derived_zone,
        other => panic!("{other:?}"),
    };
    // The reporter states AT_LINE; the point lies on the Palestinian side.
    assert_eq!(zone(&ledger, 1), Some(Zone::PalestinianControlled));
    ledger.run(amendment(id, at(31.5, 34.2), "idf", None)).unwrap();
    assert_eq!(
        zone(&ledger, 2),
        Some(Zone::IsraeliControlled),
        "re-derived for the new version"
    );
}
