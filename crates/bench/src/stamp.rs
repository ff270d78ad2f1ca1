//! The writer's send time, carried in every report the bench writes.
//!
//! A report's summary ends with `report NNNNNNNNNNNN sent TTTTTTTTTTTTTTTT`:
//! its number, and the microseconds from the run's start to the moment the
//! writer sent it, both fixed width. Requests are encoded once with the
//! time zero; the sixteen digits are written into the encoded bytes just
//! before the request is sent. Every system is timed from that moment by
//! the same client, and a subscriber reads both numbers from what it
//! received, whichever system delivered it.

use prost::bytes::{Bytes, BytesMut};

/// Digits of the send time.
const TIME_DIGITS: usize = 16;

/// Digits of the report number.
const NUMBER_DIGITS: usize = 12;

const SENT: &str = " sent ";

/// The end of report `n`'s summary, with the send time zero.
pub(crate) fn tail(n: u64) -> String {
    format!("report {n:0NUMBER_DIGITS$}{SENT}{:0TIME_DIGITS$}", 0)
}

/// An encoded message holding one report, with where its send time goes.
#[derive(Debug, Clone)]
pub(crate) struct Stamped {
    bytes: Bytes,
    slot: usize,
}

impl Stamped {
    /// `encoded` holds report `n`'s summary; `None` if it does not.
    pub(crate) fn new(encoded: Vec<u8>, n: u64) -> Option<Stamped> {
        let marker = format!("{n:0NUMBER_DIGITS$}{SENT}");
        let at = find(&encoded, marker.as_bytes())? + marker.len();
        (encoded.len() >= at + TIME_DIGITS).then(|| Stamped {
            bytes: encoded.into(),
            slot: at,
        })
    }

    /// The bytes as encoded, send time zero (for throughput, where no
    /// receipt is timed).
    pub(crate) fn unstamped(&self) -> Bytes {
        self.bytes.clone()
    }

    /// A copy sent at `micros`.
    pub(crate) fn sent_at(&self, micros: u64) -> Bytes {
        let mut bytes = BytesMut::from(&self.bytes[..]);
        write_digits(&mut bytes[self.slot..self.slot + TIME_DIGITS], micros);
        bytes.freeze()
    }
}

/// The report number and send time a received summary carries.
pub(crate) fn read(summary: &[u8]) -> Option<(u64, u64)> {
    let time_at = summary.len().checked_sub(TIME_DIGITS)?;
    let number_at = time_at.checked_sub(SENT.len() + NUMBER_DIGITS)?;
    if &summary[number_at + NUMBER_DIGITS..time_at] != SENT.as_bytes() {
        return None;
    }
    Some((
        parse_digits(&summary[number_at..number_at + NUMBER_DIGITS])?,
        parse_digits(&summary[time_at..])?,
    ))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

fn write_digits(slot: &mut [u8], mut value: u64) {
    for digit in slot.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

fn parse_digits(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |value, &d| {
        d.is_ascii_digit()
            .then(|| value.checked_mul(10)?.checked_add(u64::from(d - b'0')))
            .flatten()
    })
}

/// What a receiver decodes of a report: its summary, nothing else (prost
/// skips the rest unread), the same for every system.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Carried {
    #[prost(bytes = "bytes", tag = "7")]
    summary: Bytes,
}

impl Carried {
    /// The report number and send time it carries.
    pub(crate) fn read(&self) -> Option<(u64, u64)> {
        read(&self.summary)
    }
}
