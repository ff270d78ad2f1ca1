//! Signing as a party's client does: build the `ReportStatement` of the act
//! and sign the bytes `truce_proto::convert::statement_bytes` makes of it.

use ed25519_dalek::{Signer, SigningKey};
use truce_proto::v1;

/// `key`'s signature over `statement`.
pub fn sign(key: &SigningKey, statement: &v1::ReportStatement) -> Vec<u8> {
    key.sign(&truce_proto::convert::statement_bytes(statement))
        .to_bytes()
        .to_vec()
}

/// The statement of submitting `report` under `client_report_id`.
pub fn submit(client_report_id: &str, report: &v1::Report) -> v1::ReportStatement {
    v1::ReportStatement {
        action: v1::ReportAction::Submit as i32,
        party: report.reporting_party.clone(),
        client_report_id: client_report_id.into(),
        report: Some(report.clone()),
        ..Default::default()
    }
}

/// The statement of amending `report_id`, now at `replaces_version`, into
/// `report`.
pub fn amend(report_id: &str, replaces_version: u32, report: &v1::Report, reason: &str) -> v1::ReportStatement {
    v1::ReportStatement {
        action: v1::ReportAction::Amend as i32,
        party: report.reporting_party.clone(),
        report_id: report_id.into(),
        replaces_version,
        report: Some(report.clone()),
        reason: reason.into(),
        ..Default::default()
    }
}

/// The statement of `party` retracting `report_id` at `replaces_version`.
pub fn retract(party: &str, report_id: &str, replaces_version: u32, reason: &str) -> v1::ReportStatement {
    v1::ReportStatement {
        action: v1::ReportAction::Retract as i32,
        party: party.into(),
        report_id: report_id.into(),
        replaces_version,
        reason: reason.into(),
        ..Default::default()
    }
}
