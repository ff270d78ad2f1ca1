//! Report signatures: checked on receipt against the party's registered
//! keys, and required of a party that signs everything.

use truce_auth::PartyKeys;
use truce_domain::{FieldViolation, PartyId, report::ReportSignature, statement::Statement};
use truce_proto::convert::statement_signature_holds;

/// Checks a party's signature over `statement` against the party's
/// registered keys, and whether the party must sign at all: a party that
/// requires signatures signs its submissions, amendments and retractions
/// alike, or a retraction could withdraw a signed report unsigned.
pub(super) fn check_signature(
    party: Option<&PartyId>,
    statement: Result<Statement<'_>, FieldViolation>,
    signature: &[u8],
    keys: Option<&PartyKeys>,
) -> Result<Option<ReportSignature>, FieldViolation> {
    if signature.is_empty() {
        return match (party, keys) {
            (Some(party), Some(keys)) if keys.require_signatures => Err(FieldViolation::new(
                "signature",
                format!("is required: party {party} signs its reports, amendments and retractions"),
            )),
            _ => Ok(None),
        };
    }
    let statement = statement?;
    let party = statement.party();
    let signature: [u8; 64] = signature.try_into().map_err(|_| {
        FieldViolation::new(
            "signature",
            format!("must be a 64-byte Ed25519 signature (has {} bytes)", signature.len()),
        )
    })?;
    let keys = keys.map(|k| k.signing_keys.as_slice()).unwrap_or_default();
    if keys.is_empty() {
        return Err(FieldViolation::new(
            "signature",
            format!("party {party} has no registered signing key"),
        ));
    }
    keys.iter()
        .map(|&public_key| ReportSignature { public_key, signature })
        .find(|candidate| statement_signature_holds(&statement, candidate))
        .map(Some)
        .ok_or_else(|| {
            FieldViolation::new(
                "signature",
                format!(
                    "does not verify with any key of party {party} over the statement to {} {} (truce-report-v2: \
                     the act, party, report, replaced version, content and reason)",
                    statement.action().name(),
                    statement.subject()
                ),
            )
        })
}
