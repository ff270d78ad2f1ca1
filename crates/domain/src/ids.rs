//! Identifiers: log positions, report and incident ids, party ids.
//!
//! Report and incident ids are derived from log positions ("rpt-42" is the
//! report recorded at position 42; "inc-42" the incident it opened), so every
//! replica that follows the same log names things the same way.

use std::{fmt, str::FromStr};

/// A position in the event log: gapless, strictly increasing, from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position(pub u64);

impl Position {
    /// Before the first event.
    pub const ZERO: Position = Position(0);

    /// The position after this one.
    pub fn next(self) -> Position {
        Position(self.0 + 1)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

macro_rules! positional_id {
    ($name:ident, $prefix:literal, $what:literal) => {
        #[doc = concat!("The id of ", $what, ": \"", $prefix, "\" and the log position that created it.")]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub Position);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                s.strip_prefix($prefix)
                    .filter(|digits| !digits.starts_with('0') && !digits.starts_with('+'))
                    .and_then(|digits| digits.parse::<u64>().ok())
                    .map(|n| $name(Position(n)))
                    .ok_or_else(|| {
                        format!(concat!(
                            "must be \"",
                            $prefix,
                            "\" followed by a position, e.g. \"",
                            $prefix,
                            "1\""
                        ))
                    })
            }
        }
    };
}

positional_id!(ReportId, "rpt-", "a report");
positional_id!(IncidentId, "inc-", "an incident");

/// A party: a reporter, a claimant, a party alleged responsible. Lowercase
/// ASCII letters, digits, '.', '_' and '-', 1 to 64 characters, starting
/// with a letter or digit, so ids compare exactly and print safely.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartyId(String);

impl PartyId {
    /// The most characters a party id may have.
    pub const MAX_LEN: usize = 64;

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for PartyId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let valid_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c);
        let starts_well = s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit());
        if s.is_empty() || s.len() > Self::MAX_LEN || !starts_well || !s.chars().all(valid_char) {
            return Err(format!(
                "must be a party id: 1 to {} lowercase letters, digits, '.', '_' or '-', starting with a letter or digit",
                Self::MAX_LEN
            ));
        }
        Ok(PartyId(s.to_owned()))
    }
}

impl fmt::Display for PartyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A client's idempotency key for a report (AIP-155), unique per reporting
/// party.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientReportId(String);

impl ClientReportId {
    /// The most characters a key may have.
    pub const MAX_LEN: usize = 128;

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ClientReportId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let valid_char = |c: char| c.is_ascii_alphanumeric() || "._:-".contains(c);
        if s.is_empty() || s.len() > Self::MAX_LEN || !s.chars().all(valid_char) {
            return Err(format!(
                "must be 1 to {} letters, digits, '.', '_', ':' or '-'",
                Self::MAX_LEN
            ));
        }
        Ok(ClientReportId(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positional_ids_round_trip_and_reject_lookalikes() {
        let id: IncidentId = "inc-42".parse().unwrap();
        assert_eq!(id, IncidentId(Position(42)));
        assert_eq!(id.to_string(), "inc-42");
        for bad in ["inc-", "inc-042", "inc-+4", "rpt-42", "inc-x", "INC-4"] {
            assert!(bad.parse::<IncidentId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn party_ids_are_lowercase_slugs() {
        assert!("gaza-health-ministry".parse::<PartyId>().is_ok());
        assert!("idf".parse::<PartyId>().is_ok());
        for bad in ["", "IDF", "-x", "a b", &"a".repeat(65)] {
            assert!(bad.parse::<PartyId>().is_err(), "{bad}");
        }
    }
}
