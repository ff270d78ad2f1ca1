//! The answers the sequencer gives when a write does not get through, and
//! how a refusal of the record becomes one.

use truce_domain::rejection::Refusal;
use truce_log::LogError;
use truce_proto::ServiceError;

use super::Command;
use crate::release::Reply;

/// Answers every command of `pending` UNAVAILABLE for `reason`.
pub(super) fn refuse_all(pending: Vec<(Command, Reply)>, reason: &str) {
    for (_, reply) in pending {
        let _ = reply.send(Err(ServiceError::Unavailable(reason.to_owned())));
    }
}

/// Why writes are refused while the log cannot be read.
pub(super) const UNREACHABLE: &str = "the log is unreachable; nothing was stored, retry";

pub(super) fn not_stored() -> ServiceError {
    ServiceError::Unavailable("the log failed; this write was not stored, retry".into())
}

/// The answer for a write whose append was sent and not confirmed.
pub(super) fn in_doubt_error(error: &LogError, command: &Command) -> ServiceError {
    ServiceError::Unavailable(format!(
        "the log did not confirm the write ({error}); it may or may not be recorded: {}",
        retry_advice(command)
    ))
}

/// How to retry `command` safely when it may or may not be recorded.
pub(super) fn retry_advice(command: &Command) -> &'static str {
    match command {
        Command::Report(submission) if submission.client_report_id.is_some() => {
            "retry it with the same client_report_id"
        }
        Command::Report(_) => {
            "a retry without a client_report_id may record it twice; read the incident first, or send \
             reports with a client_report_id"
        }
        Command::Review(_) => "read the incident before reviewing it again",
        Command::Amend(_) | Command::Retract(_) => {
            "read the report's current version first; a retry naming replaces_version is refused if this \
             one was recorded"
        }
    }
}

/// A log that cannot be reached is worth a retry; anything else is a
/// fault.
pub(super) fn log_failure(error: LogError) -> ServiceError {
    match error {
        LogError::Unavailable(why) => {
            ServiceError::Unavailable(format!("the log is unreachable ({why}); nothing was recorded, retry"))
        }
        other => internal(other),
    }
}

pub(super) fn internal(error: impl std::fmt::Display) -> ServiceError {
    ServiceError::Internal(error.to_string())
}

/// The answer for a command the record refused, or could not decide.
pub(super) fn refused(refusal: Refusal<LogError>) -> ServiceError {
    match refusal {
        Refusal::Rejected(rejection) => rejection.into(),
        Refusal::Unreadable(error) => log_failure(error),
        Refusal::Inconsistent(why) => internal(why),
    }
}
