//! The mediators' review: who may rule on an incident, and what the
//! rulings decide.
//!
//! Every outcome is decided by a quorum of distinct mediator parties. Each
//! mediator party has one standing ruling (its latest); an outcome (a
//! status, and for a confirmed breach the party found responsible) takes
//! effect when the rulings of a quorum agree on it, and it then stands
//! until a new quorum agrees on another: the rulings for other outcomes are
//! cleared when one is decided, so a changed finding always needs a quorum
//! of rulings made since. No single mediator decides, overturns or resets
//! anything alone, and no ruling clears another party's.
//!
//! The first ruling on a reported incident puts it under review. A ruling
//! of `UNDER_REVIEW` on an open incident withdraws the party's ruling; on a
//! decided one, it is a call to reopen it, which a quorum decides too.
//!
//! A mediator party recuses itself from an incident by reporting on it. No
//! one else's act disqualifies it: an allegation naming a mediator is a
//! claim like any other, and the accused cannot take the mediators out of
//! its review by naming them.

use crate::{
    IncidentId, PartyId, Timestamp,
    incident::{IncidentStatus, IncidentSummary},
    rejection::Rejection,
};

/// A monitor's ruling, as submitted.
#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    /// The incident.
    pub incident_id: IncidentId,
    /// The principal who ruled.
    pub reviewer: String,
    /// The mediator party it speaks for.
    pub reviewer_party: PartyId,
    /// The status it finds.
    pub status: IncidentStatus,
    /// The written finding.
    pub finding: String,
    /// For a confirmed breach: the party found responsible.
    pub responsible: Option<PartyId>,
}

/// One mediator party's standing ruling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruling {
    /// The mediator party.
    pub mediator: PartyId,
    /// The outcome it finds.
    pub status: IncidentStatus,
    /// For a confirmed breach: the party it finds responsible.
    pub responsible: Option<PartyId>,
}

impl Ruling {
    fn outcome(&self) -> (IncidentStatus, Option<&PartyId>) {
        (self.status, self.responsible.as_ref())
    }
}

/// The quorum: how many distinct mediator parties must agree on an outcome.
pub const DEFAULT_QUORUM: usize = 2;

/// Why `mediator`'s monitors may not rule on `summary`, if they may not:
/// the party reported on it (a recusal by its own act; nobody else's
/// allegation disqualifies a mediator).
pub fn disqualification(mediator: &PartyId, summary: &IncidentSummary) -> Option<String> {
    summary
        .reporters
        .contains(mediator)
        .then(|| format!("{mediator} reported on this incident, so its monitors may not rule on it"))
}

/// Whether the incident awaits a decision (no outcome decided, or reopened).
fn open(status: IncidentStatus) -> bool {
    matches!(status, IncidentStatus::Reported | IncidentStatus::UnderReview)
}

/// Applies `review` to `summary`, or says why it may not.
pub fn apply_review(
    summary: &mut IncidentSummary,
    review: &Review,
    quorum: usize,
    recorded_at: Timestamp,
    position: crate::Position,
) -> Result<(), Rejection> {
    let party = &review.reviewer_party;
    if let Some(why) = disqualification(party, summary) {
        return Err(Rejection::NotPermitted(why));
    }
    let responsible = review
        .responsible
        .clone()
        .filter(|_| review.status == IncidentStatus::ConfirmedBreach);
    let ruling = Ruling {
        mediator: party.clone(),
        status: review.status,
        responsible,
    };
    if summary.rulings.contains(&ruling) {
        return Err(Rejection::Stale(format!(
            "{party} already rules {} on this incident",
            ruling.status.name()
        )));
    }
    summary.rulings.retain(|r| &r.mediator != party);
    if ruling.status == IncidentStatus::UnderReview && open(summary.status) {
        // Withdrawn: the party is reviewing, with no finding yet.
        summary.status = IncidentStatus::UnderReview;
    } else {
        summary.rulings.push(ruling.clone());
        decide(summary, &ruling, quorum);
    }
    summary.updated_position = position;
    summary.updated_at = recorded_at;
    Ok(())
}

/// Decides `ruling`'s outcome when a quorum of standing rulings agrees on
/// it and it is not already the outcome; otherwise an incident that was
/// only reported is now under review.
fn decide(summary: &mut IncidentSummary, ruling: &Ruling, quorum: usize) {
    let outcome = ruling.outcome();
    let current = (summary.status, summary.found_responsible.as_ref());
    let agreeing = summary.rulings.iter().filter(|r| r.outcome() == outcome).count();
    if agreeing >= quorum.max(1) && outcome != current {
        summary.status = ruling.status;
        summary.found_responsible = ruling.responsible.clone();
        // Rulings for other outcomes are spent: changing this one takes a
        // new quorum. A reopened incident starts afresh.
        if ruling.status == IncidentStatus::UnderReview {
            summary.rulings.clear();
        } else {
            summary.rulings.retain(|r| r.outcome() == outcome);
        }
    } else if summary.status == IncidentStatus::Reported {
        summary.status = IncidentStatus::UnderReview;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Position, testing::report_at};

    fn review(party: &str, status: IncidentStatus, responsible: Option<&str>) -> Review {
        Review {
            incident_id: IncidentId(Position(1)),
            reviewer: format!("{party}-monitor"),
            reviewer_party: party.parse().unwrap(),
            status,
            finding: "finding".into(),
            responsible: responsible.map(|r| r.parse().unwrap()),
        }
    }

    fn party(id: &str) -> PartyId {
        id.parse().unwrap()
    }

    fn confirm(mediator: &str, responsible: &str) -> Review {
        review(mediator, IncidentStatus::ConfirmedBreach, Some(responsible))
    }

    fn find(mediator: &str, status: IncidentStatus) -> Review {
        review(mediator, status, None)
    }

    /// Reported by idf, alleging hamas.
    fn incident() -> IncidentSummary {
        let mut stored = report_at(1, |r| r.in_area("Rafah"));
        stored.report.alleged_responsible = vec![party("hamas")];
        IncidentSummary::open(&stored, Timestamp(0))
    }

    /// Applies each review in turn at positions 2, 3, ...
    fn rule_all(summary: &mut IncidentSummary, reviews: &[Review]) {
        for (n, r) in reviews.iter().enumerate() {
            let at = n as u64 + 2;
            apply_review(summary, r, 2, Timestamp(at as i64), Position(at)).unwrap();
        }
    }

    fn mediators(summary: &IncidentSummary) -> Vec<String> {
        summary.rulings.iter().map(|r| r.mediator.to_string()).collect()
    }

    #[test]
    fn a_breach_is_confirmed_only_when_the_quorum_of_distinct_parties_agrees() {
        let mut summary = incident();
        rule_all(&mut summary, &[confirm("egypt", "hamas")]);
        assert_eq!(summary.status, IncidentStatus::UnderReview);
        assert_eq!(mediators(&summary), ["egypt"]);
        assert_eq!(
            apply_review(&mut summary, &confirm("egypt", "hamas"), 2, Timestamp(2), Position(3)),
            Err(Rejection::Stale(
                "egypt already rules CONFIRMED_BREACH on this incident".into()
            ))
        );
        rule_all(&mut summary, &[confirm("qatar", "hamas")]);
        assert_eq!(summary.status, IncidentStatus::ConfirmedBreach);
        assert_eq!(summary.found_responsible, Some(party("hamas")));
    }

    #[test]
    fn disagreeing_rulings_decide_nothing_and_none_clears_another() {
        let mut summary = incident();
        rule_all(
            &mut summary,
            &[
                confirm("egypt", "hamas"),
                confirm("qatar", "unknown-group"),
                // One mediator's different finding does not wipe the others.
                find("turkey", IncidentStatus::Disputed),
            ],
        );
        assert_eq!(summary.status, IncidentStatus::UnderReview);
        assert_eq!(mediators(&summary), ["egypt", "qatar", "turkey"]);
        // A party changes its own ruling; the quorum then agrees.
        rule_all(&mut summary, &[confirm("qatar", "hamas")]);
        assert_eq!(summary.status, IncidentStatus::ConfirmedBreach);
        assert_eq!(mediators(&summary), ["egypt", "qatar"], "other rulings are spent");
    }

    #[test]
    fn a_decided_outcome_changes_only_by_a_new_quorum() {
        let mut summary = incident();
        rule_all(&mut summary, &[confirm("egypt", "hamas"), confirm("qatar", "hamas")]);
        // One mediator's different finding changes nothing on its own, nor
        // does a party that confirmed changing its mind.
        rule_all(
            &mut summary,
            &[
                find("turkey", IncidentStatus::NotABreach),
                find("egypt", IncidentStatus::Inconclusive),
            ],
        );
        assert_eq!(summary.status, IncidentStatus::ConfirmedBreach);
        assert_eq!(summary.found_responsible, Some(party("hamas")));
        // A second party finding the same other outcome makes the quorum.
        rule_all(&mut summary, &[find("united-states", IncidentStatus::NotABreach)]);
        assert_eq!(summary.status, IncidentStatus::NotABreach);
        assert_eq!(summary.found_responsible, None);
        assert_eq!(mediators(&summary), ["turkey", "united-states"]);
        // The old quorum's parties cannot flip it back alone: their earlier
        // rulings were spent, and one new ruling is not a quorum.
        rule_all(&mut summary, &[confirm("qatar", "hamas")]);
        assert_eq!(summary.status, IncidentStatus::NotABreach);
        rule_all(&mut summary, &[confirm("egypt", "hamas")]);
        assert_eq!(summary.status, IncidentStatus::ConfirmedBreach);
    }

    #[test]
    fn a_quorum_may_name_another_party_responsible_or_reopen() {
        let mut summary = incident();
        rule_all(
            &mut summary,
            &[
                confirm("egypt", "hamas"),
                confirm("qatar", "hamas"),
                confirm("turkey", "pij"),
                confirm("united-states", "pij"),
            ],
        );
        assert_eq!(summary.found_responsible, Some(party("pij")));
        rule_all(
            &mut summary,
            &[
                find("egypt", IncidentStatus::UnderReview),
                find("qatar", IncidentStatus::UnderReview),
            ],
        );
        assert_eq!(summary.status, IncidentStatus::UnderReview);
        assert_eq!(summary.found_responsible, None);
        assert!(summary.rulings.is_empty(), "a reopened incident starts afresh");
    }

    #[test]
    fn under_review_withdraws_a_ruling_on_an_open_incident() {
        let mut summary = incident();
        rule_all(&mut summary, &[find("egypt", IncidentStatus::UnderReview)]);
        assert_eq!(summary.status, IncidentStatus::UnderReview);
        assert!(summary.rulings.is_empty());
        rule_all(
            &mut summary,
            &[confirm("egypt", "hamas"), find("egypt", IncidentStatus::UnderReview)],
        );
        assert!(summary.rulings.is_empty());
        rule_all(&mut summary, &[confirm("qatar", "hamas")]);
        assert_eq!(summary.status, IncidentStatus::UnderReview);
    }

    #[test]
    fn only_its_own_report_disqualifies_a_mediator() {
        let mut summary = incident();
        let refused = apply_review(
            &mut summary,
            &find("idf", IncidentStatus::NotABreach),
            2,
            Timestamp(1),
            Position(2),
        );
        assert!(matches!(refused, Err(Rejection::NotPermitted(_))));
        // hamas attaches a report naming every mediator responsible.
        let mut attached = report_at(2, |r| r.in_area("Rafah"));
        attached.report.reporting_party = party("hamas");
        attached.report.alleged_responsible = vec![party("egypt"), party("qatar")];
        summary.absorb(&attached, Timestamp(2));
        assert!(disqualification(&party("hamas"), &summary).is_some());
        for mediator in ["egypt", "qatar"] {
            assert_eq!(disqualification(&party(mediator), &summary), None, "{mediator}");
        }
        rule_all(&mut summary, &[confirm("egypt", "hamas"), confirm("qatar", "hamas")]);
        assert_eq!(summary.status, IncidentStatus::ConfirmedBreach);
    }
}
