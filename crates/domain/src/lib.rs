//! truce's domain: what a report says, how reports group into incidents, and
//! the filter language over incidents.
//!
//! Everything here is pure: no I/O, no wire types, no clocks. The wire crate
//! converts loose protobuf messages into these strict types once, on receipt
//! (so a `Report` is valid by construction), the ingest service groups them
//! into incidents with [`grouping`], and the query service folds recorded
//! events into [`incident::Incident`]s and tests them with [`filter`].

pub mod decide;
pub mod echo;
pub mod event;
pub mod filter;
pub mod geo;
pub mod grouping;
pub mod ids;
pub mod incident;
pub mod listing;
pub mod rejection;
pub mod report;
pub mod review;
pub mod statement;
pub mod tally;
pub mod time;
pub mod violation;

#[cfg(any(test, feature = "test-support"))]
pub mod testing;

pub use echo::quote;
pub use ids::{IncidentId, PartyId, Position, ReportId};
pub use rejection::Rejection;
pub use time::Timestamp;
pub use violation::{FieldPath, FieldViolation, Violations};
