//! The one place where failures become gRPC statuses.
//!
//! Services return [`ServiceError`]; `From<ServiceError> for Status` is an
//! exhaustive match, so a new kind of failure cannot reach a client without
//! a decision about its code. Internal details are logged, never sent.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use truce_domain::{FieldViolation, Rejection};

use crate::v1;

/// The domain of every `ErrorInfo` truce sends.
pub(crate) const ERROR_DOMAIN: &str = "truce.v1";

/// The most bytes of a status message sent. A status travels in HTTP/2
/// trailers, which clients cap at 16 KiB by default; past the cap a client
/// sees `RESOURCE_EXHAUSTED` instead of the real error. Messages quote
/// client input with `truce_domain::quote`; this bound holds whatever a
/// message says.
pub(crate) const MAX_STATUS_MESSAGE_BYTES: usize = 1024;

/// The most bytes of field violations sent in a status's details; the
/// violations past it are counted in the message instead.
pub(crate) const MAX_VIOLATION_BYTES: usize = 4096;

/// Every way a request can fail, by what the caller should do about it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ServiceError {
    /// Fields break rules: fix the request.
    #[error("invalid request: {}", summarize(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// No credentials, or credentials nobody issued.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The caller may not do this (checked before existence, so it tells
    /// nothing about what exists).
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The thing named does not exist.
    #[error("{kind} {id} not found")]
    NotFound {
        /// "incident", "report".
        kind: &'static str,
        /// The id asked for.
        id: String,
    },
    /// An idempotency key was reused with different content.
    #[error("{0}")]
    AlreadyExists(String),
    /// A state the request depends on does not hold (e.g. another log).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A position that does not exist (any more, or in this log). Details
    /// carry `ErrorInfo{reason, metadata}`, e.g. the first position there
    /// is.
    #[error("{message}")]
    OutOfRange {
        /// For people.
        message: String,
        /// UPPER_SNAKE_CASE, for programs.
        reason: &'static str,
        /// What a client needs to recover, e.g. `first_available_position`.
        metadata: Vec<(&'static str, String)>,
    },
    /// A limit was reached: retry later or ask for less. Details carry
    /// `ErrorInfo{reason, metadata}`, e.g. a resume token.
    #[error("{message}")]
    ResourceExhausted {
        /// For people.
        message: String,
        /// UPPER_SNAKE_CASE, for programs.
        reason: &'static str,
        /// What a client needs to recover, e.g. `resume_token`.
        metadata: Vec<(&'static str, String)>,
    },
    /// The caller is over its rate limit: retry after the delay. Details
    /// carry `RetryInfo{retry_delay}` and `ErrorInfo{reason: RATE_LIMITED}`.
    #[error("{message}")]
    RateLimited {
        /// For people.
        message: String,
        /// When enough of the allowance is back.
        retry_after: std::time::Duration,
    },
    /// The caller's deadline passed before the answer was ready.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// Shutting down, or storage or an upstream is down: retry.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or a fault the caller cannot fix; the details stay in the log.
    #[error("internal error: {0}")]
    Internal(String),
}

fn summarize(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl ServiceError {
    /// One invalid field.
    pub fn invalid(field: impl Into<String>, rule: impl Into<String>) -> ServiceError {
        ServiceError::InvalidArgument(vec![FieldViolation::new(field, rule)])
    }

    /// The gRPC code for this error.
    pub fn code(&self) -> Code {
        match self {
            ServiceError::InvalidArgument(_) => Code::InvalidArgument,
            ServiceError::Unauthenticated(_) => Code::Unauthenticated,
            ServiceError::PermissionDenied(_) => Code::PermissionDenied,
            ServiceError::NotFound { .. } => Code::NotFound,
            ServiceError::AlreadyExists(_) => Code::AlreadyExists,
            ServiceError::FailedPrecondition(_) => Code::FailedPrecondition,
            ServiceError::OutOfRange { .. } => Code::OutOfRange,
            ServiceError::ResourceExhausted { .. } | ServiceError::RateLimited { .. } => Code::ResourceExhausted,
            ServiceError::DeadlineExceeded(_) => Code::DeadlineExceeded,
            ServiceError::Unavailable(_) => Code::Unavailable,
            ServiceError::Internal(_) => Code::Internal,
        }
    }

    /// The message a client sees.
    fn client_message(&self) -> String {
        match self {
            ServiceError::Internal(_) => "internal error; the server log has the details".to_owned(),
            other => other.to_string(),
        }
    }

    /// As a rejection in the bulk stream.
    pub fn to_rejection(&self) -> v1::RejectedReport {
        let field_violations = match self {
            ServiceError::InvalidArgument(violations) => violations
                .iter()
                .map(|v| v1::FieldViolation {
                    field: v.field.clone(),
                    description: v.description.clone(),
                })
                .collect(),
            _ => Vec::new(),
        };
        self.log();
        let retry_delay = match self {
            ServiceError::RateLimited { retry_after, .. } => prost_types::Duration::try_from(*retry_after).ok(),
            _ => None,
        };
        v1::RejectedReport {
            code: self.code() as i32,
            message: self.client_message(),
            field_violations,
            retry_delay,
        }
    }

    /// Client errors at debug, server faults at warn or error.
    fn log(&self) {
        match self {
            ServiceError::Internal(detail) => tracing::error!(%detail, "internal error"),
            ServiceError::Unavailable(detail) => tracing::warn!(%detail, "unavailable"),
            other => tracing::debug!(error = %other, "request rejected"),
        }
    }
}

fn error_info(reason: &str, metadata: Vec<(&'static str, String)>) -> ErrorDetails {
    let metadata: std::collections::HashMap<String, String> =
        metadata.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    ErrorDetails::with_error_info(reason, ERROR_DOMAIN, metadata)
}

/// `text` cut to at most `max` bytes, on a character boundary, with an
/// ellipsis when cut.
fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut cut = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &text[..cut])
}

/// As many of `violations` as fit in [`MAX_VIOLATION_BYTES`], each field
/// and description bounded too, and how many were left out.
fn bounded_violations(violations: &[FieldViolation]) -> (Vec<(String, String)>, usize) {
    let mut kept = Vec::new();
    let mut room = MAX_VIOLATION_BYTES;
    for v in violations {
        let field = bounded(&v.field, 256);
        let description = bounded(&v.description, 512);
        let size = field.len() + description.len() + 8;
        if size > room {
            break;
        }
        room -= size;
        kept.push((field, description));
    }
    let left_out = violations.len() - kept.len();
    (kept, left_out)
}

/// The record's rules, as status codes.
impl From<Rejection> for ServiceError {
    fn from(rejection: Rejection) -> Self {
        match rejection {
            Rejection::NotFound { kind, id } => ServiceError::NotFound { kind, id },
            Rejection::NotPermitted(why) => ServiceError::PermissionDenied(why),
            Rejection::Stale(why) => ServiceError::FailedPrecondition(why),
            Rejection::Invalid(violation) => ServiceError::InvalidArgument(vec![violation]),
            Rejection::KeyReused => ServiceError::AlreadyExists(
                "client_report_id was already used by this party for a different report; use a new key for new \
                 content"
                    .into(),
            ),
        }
    }
}

impl From<ServiceError> for Status {
    fn from(error: ServiceError) -> Status {
        error.log();
        let message = bounded(&error.client_message(), MAX_STATUS_MESSAGE_BYTES);
        match error {
            ServiceError::InvalidArgument(violations) => {
                let mut details = ErrorDetails::new();
                let (kept, left_out) = bounded_violations(&violations);
                for (field, description) in kept {
                    details.add_bad_request_violation(field, description);
                }
                let message = match left_out {
                    0 => message,
                    n => format!("{message} ({n} more violations not listed)"),
                };
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            ServiceError::Unauthenticated(_) => Status::unauthenticated(message),
            ServiceError::PermissionDenied(_) => Status::permission_denied(message),
            ServiceError::NotFound { .. } => Status::not_found(message),
            ServiceError::AlreadyExists(_) => Status::already_exists(message),
            ServiceError::FailedPrecondition(_) => Status::failed_precondition(message),
            ServiceError::OutOfRange { reason, metadata, .. } => {
                Status::with_error_details(Code::OutOfRange, message, error_info(reason, metadata))
            }
            ServiceError::ResourceExhausted { reason, metadata, .. } => {
                Status::with_error_details(Code::ResourceExhausted, message, error_info(reason, metadata))
            }
            ServiceError::RateLimited { retry_after, .. } => {
                let mut details = error_info("RATE_LIMITED", Vec::new());
                details.set_retry_info(Some(retry_after));
                Status::with_error_details(Code::ResourceExhausted, message, details)
            }
            ServiceError::DeadlineExceeded(_) => Status::deadline_exceeded(message),
            ServiceError::Unavailable(_) => Status::unavailable(message),
            ServiceError::Internal(_) => Status::internal(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_maps_to_its_code_and_internal_details_stay_home() {
        let cases = [
            (
                ServiceError::invalid("report.summary", "is required"),
                Code::InvalidArgument,
            ),
            (
                ServiceError::NotFound {
                    kind: "incident",
                    id: "inc-9".into(),
                },
                Code::NotFound,
            ),
            (ServiceError::Unauthenticated("no token".into()), Code::Unauthenticated),
            (
                ServiceError::PermissionDenied("observer".into()),
                Code::PermissionDenied,
            ),
            (ServiceError::AlreadyExists("key reused".into()), Code::AlreadyExists),
            (
                ServiceError::FailedPrecondition("other log".into()),
                Code::FailedPrecondition,
            ),
            (
                ServiceError::OutOfRange {
                    message: "gone".into(),
                    reason: "RESUME_POINT_UNAVAILABLE",
                    metadata: vec![("first_available_position", "1".into())],
                },
                Code::OutOfRange,
            ),
            (
                ServiceError::ResourceExhausted {
                    message: "too many".into(),
                    reason: "SUBSCRIPTION_LIMIT",
                    metadata: Vec::new(),
                },
                Code::ResourceExhausted,
            ),
            (ServiceError::Unavailable("disk".into()), Code::Unavailable),
            (ServiceError::Internal("secret path /var/x".into()), Code::Internal),
        ];
        for (error, code) in cases {
            let status = Status::from(error);
            assert_eq!(status.code(), code);
            assert!(!status.message().contains("secret"));
        }
    }

    #[test]
    fn no_status_outgrows_a_clients_trailer_limit() {
        let long = "x".repeat(100_000);
        let status = Status::from(ServiceError::FailedPrecondition(long.clone()));
        assert!(status.message().len() <= MAX_STATUS_MESSAGE_BYTES);
        assert!(status.message().ends_with('…'));
        let many: Vec<FieldViolation> = (0..1000)
            .map(|i| FieldViolation::new(format!("report.casualties[{i}].group"), long.clone()))
            .collect();
        let status = Status::from(ServiceError::InvalidArgument(many));
        let details = status.get_error_details();
        let listed = details
            .bad_request()
            .expect("bad request details")
            .field_violations
            .len();
        assert!(listed > 0 && listed < 1000);
        assert!(
            status
                .message()
                .contains(&format!("({} more violations not listed)", 1000 - listed))
        );
        // Message and details as they travel: well under 16 KiB.
        let http = status.into_http::<()>();
        let trailer_bytes: usize = http.headers().iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
        assert!(trailer_bytes < 8 * 1024, "{trailer_bytes}");
    }

    #[test]
    fn invalid_argument_carries_bad_request_details() {
        let status = Status::from(ServiceError::invalid(
            "report.location.point.latitude",
            "must be between -90 and 90 degrees",
        ));
        let details = status.get_error_details();
        let bad = details.bad_request().expect("bad request details");
        assert_eq!(bad.field_violations[0].field, "report.location.point.latitude");
        assert!(status.message().contains("latitude"));
    }
}
