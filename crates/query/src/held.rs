//! Reports and incidents as the view holds them.
//!
//! Only the incident summaries are needed to list, filter and count; the
//! reports themselves only when a call asks for an incident or a report.
//! So the reports read from the log at start stay in their stored encoding
//! and are decoded on such a call: building the view decodes each event's
//! summary and no more, and an encoded report takes a fraction of the
//! memory of a decoded one. Reports that arrive decoded (applied live) are
//! kept as they are.

use std::sync::Arc;

use prost::Message;
use truce_domain::{
    ReportId,
    incident::{Incident, IncidentSummary, RecordedReview},
    report::{Retraction, StoredReport},
};
use truce_proto::{convert::stored_report_from_wire, v1};

/// One version of a report.
#[derive(Debug, Clone)]
pub(crate) struct HeldReport {
    id: ReportId,
    form: Form,
}

#[derive(Debug, Clone)]
enum Form {
    /// As applied live: shared with the event that carried it.
    Decoded(Arc<StoredReport>),
    /// As stored in the log (a `StoredReport` message), with the
    /// retraction the view has since applied to it.
    Encoded {
        bytes: Box<[u8]>,
        retraction: Option<Box<Retraction>>,
    },
}

impl HeldReport {
    /// A decoded report.
    pub(crate) fn decoded(report: Arc<StoredReport>) -> HeldReport {
        HeldReport {
            id: report.report_id,
            form: Form::Decoded(report),
        }
    }

    /// A report still in its stored encoding, whose id is `id`.
    pub(crate) fn encoded(id: ReportId, bytes: &[u8]) -> HeldReport {
        HeldReport {
            id,
            form: Form::Encoded {
                bytes: bytes.into(),
                retraction: None,
            },
        }
    }

    /// Its id.
    pub(crate) fn id(&self) -> ReportId {
        self.id
    }

    /// The same report, retracted.
    pub(crate) fn retracted(&self, retraction: Retraction) -> HeldReport {
        let form = match &self.form {
            Form::Decoded(report) => {
                let mut report = StoredReport::clone(report);
                report.retraction = Some(retraction);
                Form::Decoded(Arc::new(report))
            }
            Form::Encoded { bytes, .. } => Form::Encoded {
                bytes: bytes.clone(),
                retraction: Some(Box::new(retraction)),
            },
        };
        HeldReport { id: self.id, form }
    }

    /// The report, decoded. An error means the stored bytes are not a
    /// report this version understands.
    pub(crate) fn report(&self) -> Result<Arc<StoredReport>, String> {
        match &self.form {
            Form::Decoded(report) => Ok(Arc::clone(report)),
            Form::Encoded { bytes, retraction } => {
                let wire = v1::StoredReport::decode(&bytes[..]).map_err(|e| format!("report {}: {e}", self.id))?;
                let mut report = stored_report_from_wire(&wire).map_err(|violations| {
                    let rules: Vec<String> = violations.iter().map(ToString::to_string).collect();
                    format!("report {}: {}", self.id, rules.join("; "))
                })?;
                report.retraction = retraction.as_deref().cloned();
                Ok(Arc::new(report))
            }
        }
    }
}

/// An incident: its summary, its reports as held, and its reviews.
#[derive(Debug, Clone)]
pub(crate) struct HeldIncident {
    /// The summary.
    pub(crate) summary: Arc<IncidentSummary>,
    /// Every report in its current version, in id order (ids are
    /// positions, appended in order).
    reports: Vec<HeldReport>,
    /// Every review, oldest first.
    reviews: Vec<RecordedReview>,
    /// Versions replaced by amendments, oldest first.
    earlier_versions: Vec<HeldReport>,
}

impl HeldIncident {
    /// The incident as the report that opened it left it.
    pub(crate) fn opened(report: HeldReport, summary: Arc<IncidentSummary>) -> HeldIncident {
        HeldIncident {
            summary,
            reports: vec![report],
            reviews: Vec::new(),
            earlier_versions: Vec::new(),
        }
    }

    /// The current version of one of its reports.
    pub(crate) fn report(&self, id: ReportId) -> Option<&HeldReport> {
        self.position_of(id).map(|i| &self.reports[i])
    }

    fn position_of(&self, id: ReportId) -> Option<usize> {
        self.reports.binary_search_by_key(&id, HeldReport::id).ok()
    }

    /// The versions of report `id` replaced by amendments, oldest first.
    pub(crate) fn earlier_versions_of(&self, id: ReportId) -> impl Iterator<Item = &HeldReport> {
        self.earlier_versions.iter().filter(move |r| r.id == id)
    }

    /// Adds a report that joined it.
    pub(crate) fn add(&mut self, report: HeldReport) {
        self.reports.push(report);
    }

    /// Replaces a report by its amended version, keeping the one replaced.
    pub(crate) fn amend(&mut self, report: HeldReport) {
        if let Some(i) = self.position_of(report.id) {
            let earlier = std::mem::replace(&mut self.reports[i], report);
            self.earlier_versions.push(earlier);
        }
    }

    /// Marks a report retracted.
    pub(crate) fn retract(&mut self, id: ReportId, retraction: Retraction) {
        if let Some(i) = self.position_of(id) {
            self.reports[i] = self.reports[i].retracted(retraction);
        }
    }

    /// Adds a review.
    pub(crate) fn review(&mut self, review: RecordedReview) {
        self.reviews.push(review);
    }

    /// Takes the summary after a change and returns the one it replaced.
    pub(crate) fn replace_summary(&mut self, summary: Arc<IncidentSummary>) -> Arc<IncidentSummary> {
        std::mem::replace(&mut self.summary, summary)
    }

    /// The incident with every report decoded.
    pub(crate) fn decode(&self) -> Result<Incident, String> {
        let decode = |reports: &[HeldReport]| reports.iter().map(HeldReport::report).collect::<Result<Vec<_>, _>>();
        Ok(Incident {
            summary: Arc::clone(&self.summary),
            reports: decode(&self.reports)?,
            reviews: self.reviews.clone(),
            earlier_versions: decode(&self.earlier_versions)?,
        })
    }
}
