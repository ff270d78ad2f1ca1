//! Conversions between wire messages and domain types.
//!
//! Wire to domain validates (`*_from_wire`, returning every field violation
//! with its full path); domain to wire cannot fail (`From`).

mod enums;
mod event;
mod incident;
mod report;
mod statement;
mod stored;
mod time;

pub use enums::WireEnum;
pub use event::{event_from_wire, event_to_wire};
pub use incident::review_to_wire;
pub use report::{Received, report_digest, report_from_wire, stored_report_from_wire};
pub use statement::{
    CONTENT_ONLY_V1_PREFIX, STATEMENT_PREFIX, content_only_v1_signature_holds, statement_bytes,
    statement_signature_holds,
};
pub use stored::{CarriedReport, StoredEvent, stored_report_id};
pub use time::{timestamp_from_wire, timestamp_to_wire};
