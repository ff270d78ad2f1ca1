//! Why the record refuses a command, in the record's own terms. The wire
//! crate maps each kind to a status code, once.

use crate::FieldViolation;

/// Why a command is refused by the rules of the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// What the command names does not exist.
    NotFound {
        /// "incident", "report".
        kind: &'static str,
        /// The id named.
        id: String,
    },
    /// The caller may not do this.
    NotPermitted(String),
    /// The record is not in the state the command relies on: already
    /// ruled, retracted, or a version that is no longer current.
    Stale(String),
    /// A field breaks a rule that depends on what is recorded.
    Invalid(FieldViolation),
    /// An idempotency key the party already used for different content.
    KeyReused,
}

impl Rejection {
    /// A field that breaks a rule of the record.
    pub fn invalid(field: &str, rule: String) -> Rejection {
        Rejection::Invalid(FieldViolation::new(field, rule))
    }
}

/// Why a decision could not be made: a rejection, or the record could not
/// be read, or it contradicts itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal<E> {
    /// The rules refuse the command.
    Rejected(Rejection),
    /// Reading the record failed.
    Unreadable(E),
    /// The record contradicts itself (a link to a missing event, a key
    /// pointing at something that is no report): a fault, not the
    /// caller's.
    Inconsistent(String),
}

impl<E> From<Rejection> for Refusal<E> {
    fn from(rejection: Rejection) -> Self {
        Refusal::Rejected(rejection)
    }
}
