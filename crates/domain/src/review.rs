//! The mediators' review: who may rule on an incident, and when a breach
//! counts as confirmed.
//!
//! Any single monitor may set an incident under review, or find it not a
//! breach, disputed or inconclusive. A confirmed breach needs agreement: a
//! quorum of monitors from distinct mediator parties naming the same party
//! responsible. Until the quorum agrees, the incident stays under review
//! and shows the confirmations so far. Nobody rules on an incident their
//! own party reported or is alleged responsible for, and a mediator party
//! confirms a breach once.

use crate::{
    IncidentId, PartyId, Timestamp,
    incident::{IncidentStatus, IncidentSummary},
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

/// One mediator party's confirmation of a breach, pending the quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirmation {
    /// The mediator party.
    pub mediator: PartyId,
    /// The party it finds responsible.
    pub responsible: PartyId,
}

/// Why a review is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The reviewer's party reported the incident or is alleged
    /// responsible.
    OwnParty(String),
    /// This mediator party has already confirmed a breach here.
    AlreadyConfirmed(String),
}

/// The quorum: how many distinct mediator parties must confirm a breach.
pub const DEFAULT_QUORUM: usize = 2;

/// Applies `review` to `summary`, or says why it may not.
pub fn apply_review(
    summary: &mut IncidentSummary,
    review: &Review,
    quorum: usize,
    recorded_at: Timestamp,
    position: crate::Position,
) -> Result<(), Refusal> {
    let party = &review.reviewer_party;
    if summary.reporters.contains(party) || summary.alleged_responsible.contains(party) {
        return Err(Refusal::OwnParty(format!(
            "{party} reported this incident or is alleged responsible for it, so its monitors may not rule on it"
        )));
    }
    match (review.status, &review.responsible) {
        (IncidentStatus::ConfirmedBreach, Some(responsible)) => {
            if summary.confirmations.iter().any(|c| &c.mediator == party) {
                return Err(Refusal::AlreadyConfirmed(format!(
                    "{party} has already confirmed a breach on this incident"
                )));
            }
            summary.confirmations.push(Confirmation {
                mediator: party.clone(),
                responsible: responsible.clone(),
            });
            let agreeing = summary
                .confirmations
                .iter()
                .filter(|c| &c.responsible == responsible)
                .count();
            if agreeing >= quorum.max(1) {
                summary.status = IncidentStatus::ConfirmedBreach;
                summary.found_responsible = Some(responsible.clone());
            } else {
                summary.status = IncidentStatus::UnderReview;
            }
        }
        (status, _) => {
            // Any other finding replaces the state of the review, including
            // confirmations still short of the quorum.
            summary.status = status;
            summary.confirmations.clear();
            summary.found_responsible = None;
        }
    }
    summary.updated_position = position;
    summary.updated_at = recorded_at;
    Ok(())
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

    fn incident() -> IncidentSummary {
        // Reported by idf, alleging hamas.
        let mut stored = report_at(1, |r| r.in_area("Rafah"));
        stored.report.alleged_responsible = vec!["hamas".parse().unwrap()];
        IncidentSummary::open(&stored, Timestamp(0))
    }

    #[test]
    fn a_breach_is_confirmed_only_when_the_quorum_of_distinct_parties_agrees() {
        let mut summary = incident();
        let confirm = |party| review(party, IncidentStatus::ConfirmedBreach, Some("hamas"));
        apply_review(&mut summary, &confirm("egypt"), 2, Timestamp(1), Position(2)).unwrap();
        assert_eq!(summary.status, IncidentStatus::UnderReview);
        assert_eq!(summary.confirmations.len(), 1);
        assert_eq!(
            apply_review(&mut summary, &confirm("egypt"), 2, Timestamp(2), Position(3)),
            Err(Refusal::AlreadyConfirmed(
                "egypt has already confirmed a breach on this incident".into()
            ))
        );
        apply_review(&mut summary, &confirm("qatar"), 2, Timestamp(3), Position(4)).unwrap();
        assert_eq!(summary.status, IncidentStatus::ConfirmedBreach);
        assert_eq!(summary.found_responsible, Some("hamas".parse().unwrap()));
    }

    #[test]
    fn disagreeing_confirmations_do_not_make_a_quorum() {
        let mut summary = incident();
        let egypt = review("egypt", IncidentStatus::ConfirmedBreach, Some("hamas"));
        let qatar = review("qatar", IncidentStatus::ConfirmedBreach, Some("unknown-group"));
        apply_review(&mut summary, &egypt, 2, Timestamp(1), Position(2)).unwrap();
        apply_review(&mut summary, &qatar, 2, Timestamp(2), Position(3)).unwrap();
        assert_eq!(summary.status, IncidentStatus::UnderReview);
        // Another finding clears the pending confirmations.
        apply_review(
            &mut summary,
            &review("united-states", IncidentStatus::Disputed, None),
            2,
            Timestamp(3),
            Position(4),
        )
        .unwrap();
        assert_eq!(summary.status, IncidentStatus::Disputed);
        assert!(summary.confirmations.is_empty());
    }

    #[test]
    fn parties_involved_may_not_rule() {
        let mut summary = incident();
        for party in ["idf", "hamas"] {
            let refused = apply_review(
                &mut summary,
                &review(party, IncidentStatus::NotABreach, None),
                2,
                Timestamp(1),
                Position(2),
            );
            assert!(matches!(refused, Err(Refusal::OwnParty(_))), "{party}");
        }
        assert_eq!(summary.status, IncidentStatus::Reported);
    }
}
