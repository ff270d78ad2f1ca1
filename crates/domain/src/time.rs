//! Instants as nanoseconds since the Unix epoch.

use std::{
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// An instant, in nanoseconds since 1970-01-01T00:00:00Z (UTC). Covers the
/// years 1678 to 2262, which is every date a report can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    const NANOS_PER_SECOND: i64 = 1_000_000_000;

    /// From protobuf-style seconds and nanoseconds, if representable.
    pub fn from_parts(seconds: i64, nanos: i32) -> Option<Timestamp> {
        if !(0..1_000_000_000).contains(&nanos) {
            return None;
        }
        seconds
            .checked_mul(Self::NANOS_PER_SECOND)?
            .checked_add(i64::from(nanos))
            .map(Timestamp)
    }

    /// Protobuf-style seconds and nanoseconds.
    pub fn to_parts(self) -> (i64, i32) {
        let seconds = self.0.div_euclid(Self::NANOS_PER_SECOND);
        let nanos = self.0.rem_euclid(Self::NANOS_PER_SECOND) as i32;
        (seconds, nanos)
    }

    /// From a system clock reading.
    pub fn from_system(time: SystemTime) -> Timestamp {
        match time.duration_since(UNIX_EPOCH) {
            Ok(after) => Timestamp(i64::try_from(after.as_nanos()).unwrap_or(i64::MAX)),
            Err(before) => Timestamp(-i64::try_from(before.duration().as_nanos()).unwrap_or(i64::MAX)),
        }
    }

    /// Parses an RFC 3339 UTC time such as `2025-11-22T10:30:00Z`.
    pub fn parse_rfc3339(text: &str) -> Result<Timestamp, String> {
        humantime::parse_rfc3339(text)
            .map(Timestamp::from_system)
            .map_err(|_| "must be an RFC 3339 UTC time such as \"2025-11-22T10:30:00Z\"".to_owned())
    }

    /// This instant plus `duration`, saturating.
    pub fn saturating_add(self, duration: Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX)),
        )
    }

    /// The absolute distance between two instants.
    pub fn abs_diff(self, other: Timestamp) -> Duration {
        Duration::from_nanos(self.0.abs_diff(other.0))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 >= 0 {
            let time = UNIX_EPOCH + Duration::from_nanos(self.0 as u64);
            write!(f, "{}", humantime::format_rfc3339_nanos(time))
        } else {
            write!(f, "{}ns before the epoch", self.0.unsigned_abs())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip_including_before_the_epoch() {
        for (s, n) in [(0, 0), (1_763_800_000, 5), (-1, 999_999_999)] {
            assert_eq!(Timestamp::from_parts(s, n).unwrap().to_parts(), (s, n));
        }
        assert!(Timestamp::from_parts(i64::MAX, 0).is_none());
        assert!(Timestamp::from_parts(0, -1).is_none());
    }

    #[test]
    fn parses_rfc3339() {
        let t = Timestamp::parse_rfc3339("2025-11-22T10:30:00Z").unwrap();
        assert_eq!(t.to_parts().0, 1_763_807_400);
        assert!(Timestamp::parse_rfc3339("22 Nov").is_err());
    }
}
