//! Conversions between wire messages and domain types.
//!
//! Wire to domain validates (`*_from_wire`, returning every field violation
//! with its full path); domain to wire cannot fail (`From`).

mod event;
mod incident;
mod report;
mod stored;
mod time;

pub use event::{event_from_wire, event_to_wire};
pub use incident::review_to_wire;
pub use report::{
    REPORT_SIGNING_PREFIX, Received, report_digest, report_from_wire, report_signature_holds, report_signing_bytes,
    stored_report_from_wire,
};
pub use stored::StoredEvent;
pub use time::{timestamp_from_wire, timestamp_to_wire};
