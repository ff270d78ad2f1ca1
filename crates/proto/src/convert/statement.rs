//! The exact bytes a party signs, built in one place for the service that
//! checks a signature on receipt, `truce verify` that checks it again from
//! the log, and every client that signs.
//!
//! Version 2 (`truce-report-v2`) signs a [`v1::ReportStatement`]: the act,
//! the party, the report and the version replaced, with the report's
//! content. Version 1 (`truce-report-v1`) signed a report's content alone;
//! the service no longer accepts it, and it is kept here only so that
//! signatures already in a log can be checked for what they are.

use prost::Message;
use truce_domain::{
    report::{Report, ReportSignature},
    statement::{Action, Statement},
};

use crate::v1;

/// Begins every statement's signed bytes, so that a statement signature can
/// never be taken for a signature over anything else (nor for one of the
/// content-only first scheme).
pub const STATEMENT_PREFIX: &[u8] = b"truce-report-v2\n";

/// Began the signed bytes of the first scheme, which covered a report's
/// content only.
pub const CONTENT_ONLY_V1_PREFIX: &[u8] = b"truce-report-v1\n";

/// The bytes a party signs for `statement`: [`STATEMENT_PREFIX`], then the
/// statement's deterministic encoding (prost writes fields in number order
/// and omits defaults, as other protobuf libraries do when asked for
/// deterministic output of a message without maps).
pub fn statement_bytes(statement: &v1::ReportStatement) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(STATEMENT_PREFIX.len() + statement.encoded_len());
    bytes.extend_from_slice(STATEMENT_PREFIX);
    statement.encode_raw(&mut bytes);
    bytes
}

impl From<&Statement<'_>> for v1::ReportStatement {
    fn from(statement: &Statement<'_>) -> Self {
        let action = match statement.action() {
            Action::Submit => v1::ReportAction::Submit,
            Action::Amend => v1::ReportAction::Amend,
            Action::Retract => v1::ReportAction::Retract,
        };
        let mut wire = v1::ReportStatement {
            action: action as i32,
            party: statement.party().to_string(),
            ..Default::default()
        };
        match *statement {
            Statement::Submit {
                client_report_id,
                report,
            } => {
                wire.client_report_id = client_report_id.as_str().to_owned();
                wire.report = Some(v1::Report::from(report));
            }
            Statement::Amend {
                report_id,
                replaces_version,
                report,
                reason,
            } => {
                wire.report_id = report_id.to_string();
                wire.replaces_version = replaces_version;
                wire.report = Some(v1::Report::from(report));
                wire.reason = reason.to_owned();
            }
            Statement::Retract {
                report_id,
                replaces_version,
                reason,
                ..
            } => {
                wire.report_id = report_id.to_string();
                wire.replaces_version = replaces_version;
                wire.reason = reason.to_owned();
            }
        }
        wire
    }
}

/// Checks a party's signature over `statement`. A report in it is encoded
/// from the domain report, which is exactly the report as received: the
/// conversions keep every field as given.
pub fn statement_signature_holds(statement: &Statement<'_>, signature: &ReportSignature) -> bool {
    holds(&statement_bytes(&v1::ReportStatement::from(statement)), signature)
}

/// Checks a signature of the first scheme, over `report`'s content alone.
/// Such a signature says nothing about which act, report or version it was
/// given for.
pub fn content_only_v1_signature_holds(report: &Report, signature: &ReportSignature) -> bool {
    let report = v1::Report::from(report);
    let mut bytes = Vec::with_capacity(CONTENT_ONLY_V1_PREFIX.len() + report.encoded_len());
    bytes.extend_from_slice(CONTENT_ONLY_V1_PREFIX);
    report.encode_raw(&mut bytes);
    holds(&bytes, signature)
}

fn holds(bytes: &[u8], signature: &ReportSignature) -> bool {
    use ed25519_dalek::Verifier;
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&signature.public_key) else {
        return false;
    };
    let signed = ed25519_dalek::Signature::from_bytes(&signature.signature);
    key.verify(bytes, &signed).is_ok()
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer, SigningKey};
    use truce_domain::{PartyId, Position, ReportId, ids::ClientReportId, testing::report_at};

    use super::*;

    fn sign(statement: &Statement<'_>, key: &SigningKey) -> ReportSignature {
        ReportSignature {
            public_key: key.verifying_key().to_bytes(),
            signature: key
                .sign(&statement_bytes(&v1::ReportStatement::from(statement)))
                .to_bytes(),
        }
    }

    /// A signature holds for the statement signed and for no other act,
    /// party, report, version, content or reason.
    #[test]
    fn a_signature_binds_every_part_of_its_statement() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let stored = report_at(4, |draft| draft);
        let report = &stored.report;
        let mut edited = report.clone();
        edited.summary.push_str(" (edited)");
        let key_1: ClientReportId = "idf-1".parse().unwrap();
        let key_2: ClientReportId = "idf-2".parse().unwrap();
        let rpt = |p| ReportId(Position(p));
        let idf: PartyId = "idf".parse().unwrap();
        let hamas: PartyId = "hamas".parse().unwrap();
        let amend = Statement::Amend {
            report_id: rpt(4),
            replaces_version: 1,
            report,
            reason: "corrected",
        };
        let signature = sign(&amend, &key);
        assert!(statement_signature_holds(&amend, &signature));
        let others = [
            Statement::Submit {
                client_report_id: &key_1,
                report,
            },
            Statement::Amend {
                report_id: rpt(5),
                replaces_version: 1,
                report,
                reason: "corrected",
            },
            Statement::Amend {
                report_id: rpt(4),
                replaces_version: 2,
                report,
                reason: "corrected",
            },
            Statement::Amend {
                report_id: rpt(4),
                replaces_version: 1,
                report: &edited,
                reason: "corrected",
            },
            Statement::Amend {
                report_id: rpt(4),
                replaces_version: 1,
                report,
                reason: "other",
            },
            Statement::Retract {
                party: &idf,
                report_id: rpt(4),
                replaces_version: 1,
                reason: "corrected",
            },
        ];
        for other in &others {
            assert!(!statement_signature_holds(other, &signature), "{other:?}");
        }
        let submit = Statement::Submit {
            client_report_id: &key_1,
            report,
        };
        let signature = sign(&submit, &key);
        let replayed = Statement::Submit {
            client_report_id: &key_2,
            report,
        };
        assert!(statement_signature_holds(&submit, &signature));
        assert!(!statement_signature_holds(&replayed, &signature));
        assert!(!content_only_v1_signature_holds(report, &signature));
        let retract = |party| Statement::Retract {
            party,
            report_id: rpt(4),
            replaces_version: 1,
            reason: "withdrawn",
        };
        let signature = sign(&retract(&idf), &key);
        assert!(statement_signature_holds(&retract(&idf), &signature));
        assert!(!statement_signature_holds(&retract(&hamas), &signature));
    }

    /// The signed bytes are fixed: a change to them breaks every client
    /// that signs, so it needs a new prefix.
    #[test]
    fn the_signed_bytes_are_the_prefix_and_the_deterministic_encoding() {
        let idf: PartyId = "idf".parse().unwrap();
        let statement = Statement::Retract {
            party: &idf,
            report_id: ReportId(Position(12)),
            replaces_version: 2,
            reason: "dup",
        };
        let bytes = statement_bytes(&v1::ReportStatement::from(&statement));
        let mut expected = b"truce-report-v2\n".to_vec();
        // action = 3, party = "idf", report_id = "rpt-12",
        // replaces_version = 2, reason = "dup"
        expected.extend_from_slice(&[0x08, 3, 0x12, 3]);
        expected.extend_from_slice(b"idf");
        expected.extend_from_slice(&[0x22, 6]);
        expected.extend_from_slice(b"rpt-12");
        expected.extend_from_slice(&[0x28, 2, 0x3a, 3]);
        expected.extend_from_slice(b"dup");
        assert_eq!(bytes, expected);
    }

    /// Signatures of the first scheme still check, as content-only ones.
    #[test]
    fn a_content_only_signature_checks_as_such() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let stored = report_at(4, |draft| draft);
        let wire = v1::Report::from(&stored.report);
        let mut bytes = b"truce-report-v1\n".to_vec();
        wire.encode_raw(&mut bytes);
        let signature = ReportSignature {
            public_key: key.verifying_key().to_bytes(),
            signature: key.sign(&bytes).to_bytes(),
        };
        assert!(content_only_v1_signature_holds(&stored.report, &signature));
        let key_1: ClientReportId = "idf-1".parse().unwrap();
        let submit = Statement::Submit {
            client_report_id: &key_1,
            report: &stored.report,
        };
        assert!(!statement_signature_holds(&submit, &signature));
    }
}
