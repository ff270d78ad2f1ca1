//! The mediators' review: who may rule on an incident, and when a breach
//! counts as confirmed.
//!
//! Any single monitor may set an incident under review, or find it not a
//! breach, disputed or inconclusive. A confirmed breach needs agreement: a
//! quorum of monitors from distinct mediator parties naming the same party
//! responsible. Until the quorum agrees, the incident stays under review
//! and shows the confirmations so far. A mediator party confirms a breach
//! once.
//!
//! Once confirmed, a breach stands until a new quorum of distinct mediator
//! parties agrees on another outcome: a single ruling that differs is
//! recorded as a call to reconsider, shown beside the finding, and changes
//! nothing on its own.
//!
//! A mediator party's monitors may not rule where the party is involved,
//! but only by what is not in the gift of the party under review: its own
//! report on the incident, or an allegation against it by a party that is
//! not itself alleged responsible there. The accused cannot disqualify the
//! mediators by naming them.

use crate::{
    IncidentId, PartyId, Timestamp,
    incident::{IncidentStatus, IncidentSummary},
    report::StoredReport,
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

/// One mediator party's call to change a confirmed breach, pending a new
/// quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconsideration {
    /// The mediator party.
    pub mediator: PartyId,
    /// The outcome it finds.
    pub status: IncidentStatus,
    /// For a confirmed breach: the party it finds responsible.
    pub responsible: Option<PartyId>,
}

/// What one standing report alleges: who reported it, and whom it names
/// responsible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allegation {
    /// The reporting party.
    pub by: PartyId,
    /// The parties it alleges responsible.
    pub against: Vec<PartyId>,
}

impl Allegation {
    /// The allegations of an incident's reports that stand (current
    /// versions, not retracted).
    pub fn of<'a>(reports: impl IntoIterator<Item = &'a StoredReport>) -> Vec<Allegation> {
        reports
            .into_iter()
            .filter(|r| r.is_current())
            .map(|r| Allegation {
                by: r.report.reporting_party.clone(),
                against: r.report.alleged_responsible.clone(),
            })
            .collect()
    }
}

/// Why `mediator`'s monitors may not rule on an incident with these
/// standing `allegations`, if they may not: the party reported on it, or a
/// party not itself under review (alleged responsible by another party)
/// alleges it responsible. An allegation by a party under review never
/// disqualifies: the accused would otherwise name every mediator and
/// freeze its own review.
pub fn disqualification(mediator: &PartyId, allegations: &[Allegation]) -> Option<String> {
    if allegations.iter().any(|a| &a.by == mediator) {
        return Some(format!(
            "{mediator} reported on this incident, so its monitors may not rule on it"
        ));
    }
    let under_review = |party: &PartyId| allegations.iter().any(|a| &a.by != party && a.against.contains(party));
    let accuser = allegations
        .iter()
        .find(|a| &a.by != mediator && a.against.contains(mediator) && !under_review(&a.by))?;
    Some(format!(
        "{} alleges {mediator} responsible for this incident, so its monitors may not rule on it",
        accuser.by
    ))
}

/// Why a review is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The reviewer's party is involved in the incident.
    OwnParty(String),
    /// This mediator party has already confirmed a breach here.
    AlreadyConfirmed(String),
}

/// The quorum: how many distinct mediator parties must confirm a breach.
pub const DEFAULT_QUORUM: usize = 2;

/// Applies `review` to `summary`, whose standing reports allege
/// `allegations`, or says why it may not.
pub fn apply_review(
    summary: &mut IncidentSummary,
    review: &Review,
    allegations: &[Allegation],
    quorum: usize,
    recorded_at: Timestamp,
    position: crate::Position,
) -> Result<(), Refusal> {
    let party = &review.reviewer_party;
    if let Some(why) = disqualification(party, allegations) {
        return Err(Refusal::OwnParty(why));
    }
    if summary.status == IncidentStatus::ConfirmedBreach {
        reconsider(summary, review, quorum)?;
    } else {
        rule(summary, review, quorum)?;
    }
    summary.updated_position = position;
    summary.updated_at = recorded_at;
    Ok(())
}

/// A ruling on a confirmed breach: one more confirmation of the same
/// finding, or a call to change it, which takes effect once a quorum of
/// distinct mediator parties calls for the same outcome.
fn reconsider(summary: &mut IncidentSummary, review: &Review, quorum: usize) -> Result<(), Refusal> {
    let party = &review.reviewer_party;
    let upholds = review.status == IncidentStatus::ConfirmedBreach && review.responsible == summary.found_responsible;
    if upholds {
        if summary.confirmations.iter().any(|c| &c.mediator == party) {
            return Err(Refusal::AlreadyConfirmed(format!(
                "{party} has already confirmed a breach on this incident"
            )));
        }
        if let Some(responsible) = &review.responsible {
            summary.confirmations.push(Confirmation {
                mediator: party.clone(),
                responsible: responsible.clone(),
            });
        }
        // Upholding the finding withdraws the party's call to change it.
        summary.reconsiderations.retain(|r| &r.mediator != party);
        return Ok(());
    }
    // A party's latest call replaces its earlier one.
    summary.reconsiderations.retain(|r| &r.mediator != party);
    summary.reconsiderations.push(Reconsideration {
        mediator: party.clone(),
        status: review.status,
        responsible: review.responsible.clone(),
    });
    let agreeing: Vec<&Reconsideration> = summary
        .reconsiderations
        .iter()
        .filter(|r| r.status == review.status && r.responsible == review.responsible)
        .collect();
    if agreeing.len() >= quorum.max(1) {
        summary.confirmations = match &review.responsible {
            Some(responsible) if review.status == IncidentStatus::ConfirmedBreach => agreeing
                .iter()
                .map(|r| Confirmation {
                    mediator: r.mediator.clone(),
                    responsible: responsible.clone(),
                })
                .collect(),
            _ => Vec::new(),
        };
        summary.status = review.status;
        summary.found_responsible = review
            .responsible
            .clone()
            .filter(|_| review.status == IncidentStatus::ConfirmedBreach);
        summary.reconsiderations.clear();
    }
    Ok(())
}

/// A ruling on an incident not (yet) confirmed as a breach.
fn rule(summary: &mut IncidentSummary, review: &Review, quorum: usize) -> Result<(), Refusal> {
    let party = &review.reviewer_party;
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

    fn party(id: &str) -> PartyId {
        id.parse().unwrap()
    }

    fn allegation(by: &str, against: &[&str]) -> Allegation {
        Allegation {
            by: party(by),
            against: against.iter().map(|p| party(p)).collect(),
        }
    }

    /// Reported by idf, alleging hamas.
    fn alleged() -> Vec<Allegation> {
        vec![allegation("idf", &["hamas"])]
    }

    fn incident() -> IncidentSummary {
        let mut stored = report_at(1, |r| r.in_area("Rafah"));
        stored.report.alleged_responsible = vec![party("hamas")];
        IncidentSummary::open(&stored, Timestamp(0))
    }

    /// Applies each review in turn at positions 2, 3, ...
    fn rule_all(summary: &mut IncidentSummary, allegations: &[Allegation], reviews: &[Review]) {
        for (n, r) in reviews.iter().enumerate() {
            let at = n as u64 + 2;
            apply_review(summary, r, allegations, 2, Timestamp(at as i64), Position(at)).unwrap();
        }
    }

    #[test]
    fn a_breach_is_confirmed_only_when_the_quorum_of_distinct_parties_agrees() {
        let mut summary = incident();
        let confirm = |party| review(party, IncidentStatus::ConfirmedBreach, Some("hamas"));
        rule_all(&mut summary, &alleged(), &[confirm("egypt")]);
        assert_eq!(summary.status, IncidentStatus::UnderReview);
        assert_eq!(summary.confirmations.len(), 1);
        assert_eq!(
            apply_review(
                &mut summary,
                &confirm("egypt"),
                &alleged(),
                2,
                Timestamp(2),
                Position(3)
            ),
            Err(Refusal::AlreadyConfirmed(
                "egypt has already confirmed a breach on this incident".into()
            ))
        );
        rule_all(&mut summary, &alleged(), &[confirm("qatar")]);
        assert_eq!(summary.status, IncidentStatus::ConfirmedBreach);
        assert_eq!(summary.found_responsible, Some(party("hamas")));
    }

    #[test]
    fn disagreeing_confirmations_do_not_make_a_quorum() {
        let mut summary = incident();
        rule_all(
            &mut summary,
            &alleged(),
            &[
                review("egypt", IncidentStatus::ConfirmedBreach, Some("hamas")),
                review("qatar", IncidentStatus::ConfirmedBreach, Some("unknown-group")),
            ],
        );
        assert_eq!(summary.status, IncidentStatus::UnderReview);
        // Before the quorum, another finding clears the pending confirmations.
        rule_all(
            &mut summary,
            &alleged(),
            &[review("united-states", IncidentStatus::Disputed, None)],
        );
        assert_eq!(summary.status, IncidentStatus::Disputed);
        assert!(summary.confirmations.is_empty());
    }

    #[test]
    fn a_confirmed_breach_changes_only_by_a_new_quorum() {
        let mut summary = incident();
        let confirm = |party| review(party, IncidentStatus::ConfirmedBreach, Some("hamas"));
        rule_all(&mut summary, &alleged(), &[confirm("egypt"), confirm("qatar")]);
        assert_eq!(summary.status, IncidentStatus::ConfirmedBreach);

        // One mediator's different finding is a call to reconsider, no more.
        rule_all(
            &mut summary,
            &alleged(),
            &[review("turkey", IncidentStatus::NotABreach, None)],
        );
        assert_eq!(summary.status, IncidentStatus::ConfirmedBreach);
        assert_eq!(summary.found_responsible, Some(party("hamas")));
        assert_eq!(summary.confirmations.len(), 2);
        assert_eq!(
            summary.reconsiderations,
            vec![Reconsideration {
                mediator: party("turkey"),
                status: IncidentStatus::NotABreach,
                responsible: None,
            }]
        );
        // Calls for different outcomes do not add up; a party's latest call
        // replaces its earlier one.
        rule_all(
            &mut summary,
            &alleged(),
            &[
                review("united-states", IncidentStatus::Inconclusive, None),
                review("turkey", IncidentStatus::Disputed, None),
            ],
        );
        assert_eq!(summary.status, IncidentStatus::ConfirmedBreach);
        assert_eq!(summary.reconsiderations.len(), 2);
        // A second party calling for the same outcome makes the new quorum.
        rule_all(
            &mut summary,
            &alleged(),
            &[review("united-states", IncidentStatus::Disputed, None)],
        );
        assert_eq!(summary.status, IncidentStatus::Disputed);
        assert_eq!(summary.found_responsible, None);
        assert!(summary.confirmations.is_empty() && summary.reconsiderations.is_empty());
    }

    #[test]
    fn a_quorum_may_name_another_party_responsible() {
        let mut summary = incident();
        let confirm = |party, responsible| review(party, IncidentStatus::ConfirmedBreach, Some(responsible));
        rule_all(
            &mut summary,
            &alleged(),
            &[
                confirm("egypt", "hamas"),
                confirm("qatar", "hamas"),
                // Upholding: one more confirmation.
                confirm("turkey", "hamas"),
                confirm("united-states", "pij"),
            ],
        );
        assert_eq!(summary.found_responsible, Some(party("hamas")));
        assert_eq!(summary.confirmations.len(), 3);
        rule_all(&mut summary, &alleged(), &[confirm("turkey", "pij")]);
        assert_eq!(summary.status, IncidentStatus::ConfirmedBreach);
        assert_eq!(summary.found_responsible, Some(party("pij")));
        let mediators: Vec<String> = summary.confirmations.iter().map(|c| c.mediator.to_string()).collect();
        assert_eq!(mediators, ["united-states", "turkey"]);
    }

    #[test]
    fn parties_involved_may_not_rule() {
        let mut summary = incident();
        for party in ["idf", "hamas"] {
            let refused = apply_review(
                &mut summary,
                &review(party, IncidentStatus::NotABreach, None),
                &alleged(),
                2,
                Timestamp(1),
                Position(2),
            );
            assert!(matches!(refused, Err(Refusal::OwnParty(_))), "{party}");
        }
        assert_eq!(summary.status, IncidentStatus::Reported);
    }

    #[test]
    fn the_accused_cannot_disqualify_the_mediators_by_naming_them() {
        // hamas, accused by idf, names every mediator party responsible.
        let mediators = ["egypt", "qatar", "turkey", "united-states"];
        let allegations = vec![allegation("idf", &["hamas"]), allegation("hamas", &mediators)];
        for mediator in mediators {
            assert_eq!(disqualification(&party(mediator), &allegations), None, "{mediator}");
        }
        // Even when hamas also accuses idf: idf is then under review too,
        // and neither accuser's naming of a mediator disqualifies it.
        let both = vec![allegation("idf", &["hamas"]), allegation("hamas", &["idf", "egypt"])];
        assert_eq!(disqualification(&party("egypt"), &both), None);
        // The parties themselves remain disqualified.
        assert!(disqualification(&party("hamas"), &both).is_some());
        assert!(disqualification(&party("idf"), &both).is_some());
    }

    #[test]
    fn a_mediator_is_disqualified_by_its_own_report_or_an_accuser_not_under_review() {
        let own = vec![allegation("idf", &["hamas"]), allegation("egypt", &[])];
        assert_eq!(
            disqualification(&party("egypt"), &own).as_deref(),
            Some("egypt reported on this incident, so its monitors may not rule on it")
        );
        // A party that is not itself accused names qatar.
        let third = vec![allegation("idf", &["hamas"]), allegation("un-ocha", &["qatar"])];
        assert_eq!(
            disqualification(&party("qatar"), &third).as_deref(),
            Some("un-ocha alleges qatar responsible for this incident, so its monitors may not rule on it")
        );
    }
}
