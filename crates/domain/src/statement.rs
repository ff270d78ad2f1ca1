//! What a party's signature binds.
//!
//! A signature over a report's content alone could be replayed as a new
//! report, re-applied as an amendment to undo a later correction, or
//! attached to another report, and still verify. A [`Statement`] names the
//! act (submit, amend, retract), the party, the report (the client's key
//! for a submission, whose report id is not known yet; the report id after)
//! and the version the act replaces, so a signature over it is good for
//! that one act. The wire crate encodes a statement into the exact bytes
//! signed; this module decides what a statement says and when revisions
//! apply.

use std::collections::HashMap;

use crate::{
    PartyId, ReportId,
    event::{EventBody, RecordedEvent},
    ids::ClientReportId,
    report::{Report, StoredReport},
};

/// The act a party signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A new report.
    Submit,
    /// A new version of a report.
    Amend,
    /// A report's withdrawal.
    Retract,
}

impl Action {
    /// Lowercase, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Action::Submit => "submit",
            Action::Amend => "amend",
            Action::Retract => "retract",
        }
    }
}

/// One act on one report, as its party signs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Statement<'a> {
    /// Submitting `report` under the client's key: a signed submission
    /// needs a key, which makes its signature good for one report only.
    Submit {
        /// The submission's idempotency key.
        client_report_id: &'a ClientReportId,
        /// The report, its party the signer.
        report: &'a Report,
    },
    /// Replacing version `replaces_version` of `report_id` with `report`.
    Amend {
        /// The report amended.
        report_id: ReportId,
        /// Its version before the amendment.
        replaces_version: u32,
        /// The new version, its party the signer.
        report: &'a Report,
        /// Why.
        reason: &'a str,
    },
    /// Retracting `report_id` at version `replaces_version`.
    Retract {
        /// The reporting party, the signer.
        party: &'a PartyId,
        /// The report retracted.
        report_id: ReportId,
        /// Its version when retracted.
        replaces_version: u32,
        /// Why.
        reason: &'a str,
    },
}

impl Statement<'_> {
    /// The act.
    pub fn action(&self) -> Action {
        match self {
            Statement::Submit { .. } => Action::Submit,
            Statement::Amend { .. } => Action::Amend,
            Statement::Retract { .. } => Action::Retract,
        }
    }

    /// The party that signs it.
    pub fn party(&self) -> &PartyId {
        match self {
            Statement::Submit { report, .. } | Statement::Amend { report, .. } => &report.reporting_party,
            Statement::Retract { party, .. } => party,
        }
    }

    /// What it is about, for messages: the client's key or the report id
    /// and version.
    pub fn subject(&self) -> String {
        match self {
            Statement::Submit { client_report_id, .. } => {
                format!("submission {}", client_report_id.as_str())
            }
            Statement::Amend {
                report_id,
                replaces_version,
                ..
            }
            | Statement::Retract {
                report_id,
                replaces_version,
                ..
            } => format!("{report_id} version {replaces_version}"),
        }
    }

    /// What an amendment recorded as `amended` (its new version) says.
    pub fn of_amendment(amended: &StoredReport) -> Statement<'_> {
        Statement::Amend {
            report_id: amended.report_id,
            replaces_version: amended.version.saturating_sub(1),
            report: &amended.report,
            reason: amended.amendment_reason.as_deref().unwrap_or_default(),
        }
    }
}

/// Whether a revision naming the version it replaces (`replaces`, when it
/// names one) applies to a report now at version `current`: it applies to
/// that version only, so an old amendment sent again cannot undo a later
/// one. The error says why, for a FAILED_PRECONDITION.
pub fn replaces_current(report_id: ReportId, current: u32, replaces: Option<u32>) -> Result<(), String> {
    match replaces {
        Some(replaces) if replaces != current => Err(format!(
            "{report_id} is at version {current}, not {replaces}: the request replaces a version that is no \
             longer current"
        )),
        _ => Ok(()),
    }
}

/// Each report's party, version and state as a reader of the log meets its
/// events in order: what every revision, and so every signature bound to a
/// version, must agree with. A signed amendment moved to a later place in
/// the log, or a signed submission recorded twice, verifies as a signature
/// but not against this.
#[derive(Debug, Default)]
pub struct ReportVersions {
    reports: HashMap<ReportId, Standing>,
    signed_submissions: HashMap<(PartyId, ClientReportId), ReportId>,
}

#[derive(Debug)]
struct Standing {
    party: PartyId,
    version: u32,
    retracted: bool,
}

impl ReportVersions {
    /// Takes in the next event; an error says how it contradicts the
    /// events before it.
    pub fn apply(&mut self, event: &RecordedEvent) -> Result<(), String> {
        match &event.body {
            EventBody::ReportRecorded(recorded) => {
                let report = &recorded.report;
                if report.report_id.0 != event.position {
                    return Err(format!("records {} at position {}", report.report_id, event.position));
                }
                if report.version != 1 {
                    return Err(format!(
                        "records {} at version {}, not 1",
                        report.report_id, report.version
                    ));
                }
                if let (Some(_), Some(key)) = (&report.signature, &report.client_report_id) {
                    let party = report.report.reporting_party.clone();
                    if let Some(first) = self.signed_submissions.insert((party, key.clone()), report.report_id) {
                        return Err(format!(
                            "records the signed submission {} of party {} a second time (first as {first})",
                            key.as_str(),
                            report.report.reporting_party
                        ));
                    }
                }
                self.reports.insert(
                    report.report_id,
                    Standing {
                        party: report.report.reporting_party.clone(),
                        version: 1,
                        retracted: false,
                    },
                );
                Ok(())
            }
            EventBody::ReportAmended(amended) => {
                let report = &amended.report;
                let standing = self.revisable(report.report_id, &report.report.reporting_party, "amends")?;
                if report.version != standing.version + 1 {
                    return Err(format!(
                        "records version {} of {}, which was at version {}",
                        report.version, report.report_id, standing.version
                    ));
                }
                standing.version = report.version;
                Ok(())
            }
            EventBody::ReportRetracted(retracted) => {
                let standing = self.revisable(retracted.report_id, &retracted.reporting_party, "retracts")?;
                // Events recorded before the version was kept say 0.
                if retracted.version != 0 && retracted.version != standing.version {
                    return Err(format!(
                        "retracts version {} of {}, which was at version {}",
                        retracted.version, retracted.report_id, standing.version
                    ));
                }
                standing.retracted = true;
                Ok(())
            }
            EventBody::IncidentReviewed(_) => Ok(()),
        }
    }

    /// The standing of `report_id`, which `party` revises.
    fn revisable(&mut self, report_id: ReportId, party: &PartyId, verb: &str) -> Result<&mut Standing, String> {
        let standing = self
            .reports
            .get_mut(&report_id)
            .ok_or_else(|| format!("{verb} {report_id}, which no earlier event records"))?;
        if standing.party != *party {
            return Err(format!(
                "{verb} {report_id} as party {party}, but party {} made it",
                standing.party
            ));
        }
        if standing.retracted {
            return Err(format!("{verb} {report_id}, which was retracted before"));
        }
        Ok(standing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Position, testing::report_at};

    #[test]
    fn a_revision_applies_to_the_version_it_names_only() {
        let id = ReportId(Position(3));
        assert!(replaces_current(id, 2, Some(2)).is_ok());
        assert!(replaces_current(id, 2, None).is_ok());
        let stale = replaces_current(id, 3, Some(2)).unwrap_err();
        assert!(stale.contains("rpt-3 is at version 3, not 2"), "{stale}");
    }

    /// A revision must follow the report's history; a signed submission
    /// appears once.
    #[test]
    fn report_versions_refuse_what_the_service_never_records() {
        use std::sync::Arc;

        use crate::{
            event::{ReportAmended, ReportRecorded, ReportRetracted},
            incident::IncidentSummary,
            report::ReportSignature,
        };

        let signature = ReportSignature {
            public_key: [1; 32],
            signature: [2; 64],
        };
        let recorded = |position: u64| {
            let mut report = report_at(position, |draft| draft);
            report.client_report_id = Some("idf-1".parse().unwrap());
            report.signature = Some(signature);
            let incident = Arc::new(IncidentSummary::open(&report, report.received_at));
            RecordedEvent {
                position: Position(position),
                recorded_at: report.received_at,
                body: EventBody::ReportRecorded(ReportRecorded {
                    report: Arc::new(report),
                    opened_incident: true,
                    incident,
                    content_digest: [0; 32],
                    previous_position: None,
                }),
            }
        };
        let amended = |position: u64, version: u32| {
            let mut report = report_at(1, |draft| draft);
            report.version = version;
            let incident = Arc::new(IncidentSummary::open(&report, report.received_at));
            RecordedEvent {
                position: Position(position),
                recorded_at: report.received_at,
                body: EventBody::ReportAmended(ReportAmended {
                    report: Arc::new(report),
                    incident,
                    previous_position: Position(1),
                }),
            }
        };
        let retracted = |position: u64, version: u32, party: &str| {
            let report = report_at(1, |draft| draft);
            let incident = Arc::new(IncidentSummary::open(&report, report.received_at));
            RecordedEvent {
                position: Position(position),
                recorded_at: report.received_at,
                body: EventBody::ReportRetracted(ReportRetracted {
                    report_id: report.report_id,
                    reporting_party: party.parse().unwrap(),
                    reason: "withdrawn".into(),
                    incident,
                    previous_position: Position(1),
                    version,
                    signature: None,
                }),
            }
        };
        let mut versions = ReportVersions::default();
        versions.apply(&recorded(1)).unwrap();
        versions.apply(&amended(2, 2)).unwrap();
        let again = versions.apply(&amended(3, 2)).unwrap_err();
        assert_eq!(again, "records version 2 of rpt-1, which was at version 2");
        let twice = versions.apply(&recorded(4)).unwrap_err();
        assert!(
            twice.contains("signed submission idf-1 of party idf a second time (first as rpt-1)"),
            "{twice}"
        );
        let other = versions.apply(&retracted(5, 2, "hamas")).unwrap_err();
        assert!(other.contains("but party idf made it"), "{other}");
        let stale = versions.apply(&retracted(5, 1, "idf")).unwrap_err();
        assert!(
            stale.contains("retracts version 1 of rpt-1, which was at version 2"),
            "{stale}"
        );
        versions.apply(&retracted(5, 2, "idf")).unwrap();
        let after = versions.apply(&amended(6, 3)).unwrap_err();
        assert!(after.contains("which was retracted before"), "{after}");
        let unknown = ReportVersions::default().apply(&amended(2, 2)).unwrap_err();
        assert!(unknown.contains("which no earlier event records"), "{unknown}");
    }

    #[test]
    fn an_amendment_states_the_version_before_it() {
        let mut amended = report_at(4, |draft| draft);
        amended.version = 3;
        amended.amendment_reason = Some("casualty figures corrected".into());
        let statement = Statement::of_amendment(&amended);
        assert_eq!(statement.action(), Action::Amend);
        assert_eq!(statement.party(), &amended.report.reporting_party);
        assert_eq!(statement.subject(), "rpt-4 version 2");
        let Statement::Amend { reason, .. } = statement else {
            panic!("not an amendment");
        };
        assert_eq!(reason, "casualty figures corrected");
    }
}
