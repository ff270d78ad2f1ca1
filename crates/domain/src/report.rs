//! A report as a party submits it: validated, immutable, kept exactly as
//! given. Construction is the wire crate's job; the smart constructors here
//! hold the rules every report obeys.

use crate::{IncidentId, PartyId, Timestamp, geo::LatLng};

/// Limits on what one report may carry, so that no report can exhaust
/// memory or make incidents unreadable.
pub mod limits {
    /// Characters in a summary.
    pub const SUMMARY_CHARS: usize = 4000;
    /// Characters in a short text field (outlet, area, actor, affiliation).
    pub const SHORT_TEXT_CHARS: usize = 200;
    /// Characters in the reason for an amendment or retraction.
    pub const REASON_CHARS: usize = 1000;
    /// Characters in a URL or URI.
    pub const URI_CHARS: usize = 2048;
    /// Characters in a media type.
    pub const MEDIA_TYPE_CHARS: usize = 127;
    /// Items in a repeated field of sources, claims or evidence.
    pub const ITEMS: usize = 32;
    /// Parties alleged responsible.
    pub const RESPONSIBLE: usize = 16;
    /// The largest casualty figure accepted.
    pub const MAX_COUNT: u32 = 1_000_000;
    /// How far in the future an occurrence time may lie, for clock skew.
    pub const CLOCK_SKEW: std::time::Duration = std::time::Duration::from_secs(60);
}

/// Text that must be present and short: trimmed of nothing, checked only.
pub fn bounded_text(text: &str, max_chars: usize, required: bool) -> Result<String, String> {
    if required && text.trim().is_empty() {
        return Err("is required".to_owned());
    }
    let chars = text.chars().count();
    if chars > max_chars {
        return Err(format!("must be at most {max_chars} characters (has {chars})"));
    }
    if text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err("must not contain control characters".to_owned());
    }
    Ok(text.to_owned())
}

/// A report, valid by construction.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Who reports.
    pub reporting_party: PartyId,
    /// The sources it cites.
    pub sources: Vec<Source>,
    /// When the event happened.
    pub occurred_at: Timestamp,
    /// How precisely that is known.
    pub occurred_precision: TimePrecision,
    /// Where.
    pub location: Location,
    /// What kind of event.
    pub category: Category,
    /// The reporter's account.
    pub summary: String,
    /// Parties the reporter alleges are responsible.
    pub alleged_responsible: Vec<PartyId>,
    /// Claims about who the actors were.
    pub attributions: Vec<AttributionClaim>,
    /// Casualty figures, each tagged with its claimant.
    pub casualties: Vec<CasualtyClaim>,
    /// Evidence held elsewhere.
    pub evidence: Vec<EvidenceRef>,
    /// The incident the reporter says this is about, if any.
    pub incident_id: Option<IncidentId>,
}

/// A cited source.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// The outlet or body.
    pub outlet: String,
    /// Where it published, if given.
    pub url: Option<String>,
    /// When it published, if given.
    pub published_at: Option<Timestamp>,
}

/// Checks an absolute http(s) URL; nothing is fetched.
pub fn http_url(text: &str) -> Result<String, String> {
    let text = bounded_text(text, limits::URI_CHARS, true)?;
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
        .ok_or("must be an http or https URL")?;
    if rest.is_empty() || rest.starts_with('/') || text.contains(char::is_whitespace) {
        return Err("must be an http or https URL with a host and no spaces".to_owned());
    }
    Ok(text)
}

/// Where an event happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    /// A point, if known.
    pub point: Option<LatLng>,
    /// A named area, if given.
    pub area: Option<String>,
    /// The zone the reporter states.
    pub zone: Zone,
    /// How precise the location is.
    pub precision: LocationPrecision,
}

macro_rules! named_enum {
    ($(#[$doc:meta])* $name:ident($prefix:literal) { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every value, in order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The short name used in filters and tallies, e.g. `AIR_STRIKE`.
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// From the short name, or the full wire name with its prefix.
            pub fn from_name(name: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| {
                    let short = v.name();
                    name == short || name.strip_suffix(short).is_some_and(|p| p == $prefix)
                })
            }
        }
    };
}

named_enum! {
    /// How precisely an occurrence time is known.
    TimePrecision("TIME_PRECISION_") {
        /// To the minute or better.
        Exact => "EXACT",
        /// To the hour.
        Hour => "HOUR",
        /// To the day.
        Day => "DAY",
    }
}

named_enum! {
    /// The zone relative to the demarcation ("yellow") line.
    Zone("ZONE_") {
        /// Israeli-controlled side.
        IsraeliControlled => "ISRAELI_CONTROLLED",
        /// Palestinian-controlled side.
        PalestinianControlled => "PALESTINIAN_CONTROLLED",
        /// At the line.
        AtLine => "AT_LINE",
        /// Inside a humanitarian corridor.
        HumanitarianCorridor => "HUMANITARIAN_CORRIDOR",
    }
}

named_enum! {
    /// How precise a location is.
    LocationPrecision("LOCATION_PRECISION_") {
        /// Exact point.
        Exact => "EXACT",
        /// Near the point or place.
        Near => "NEAR",
        /// Somewhere in the area.
        Area => "AREA",
        /// Somewhere in a region.
        Region => "REGION",
    }
}

named_enum! {
    /// What kind of event.
    Category("CATEGORY_") {
        /// Crossing the line.
        LineCrossing => "LINE_CROSSING",
        /// Small-arms fire.
        SmallArmsFire => "SMALL_ARMS_FIRE",
        /// Air or drone strike.
        AirStrike => "AIR_STRIKE",
        /// Artillery, mortar, missile.
        Shelling => "SHELLING",
        /// Mines, IEDs.
        ExplosiveDevice => "EXPLOSIVE_DEVICE",
        /// Misuse of a humanitarian corridor.
        CorridorMisuse => "CORRIDOR_MISUSE",
        /// Obstruction of aid.
        AidObstruction => "AID_OBSTRUCTION",
        /// Denial of access to monitors.
        MonitorAccessDenied => "MONITOR_ACCESS_DENIED",
        /// Tunnel activity.
        TunnelActivity => "TUNNEL_ACTIVITY",
        /// Hostage remains returned.
        HostageRemainsReturned => "HOSTAGE_REMAINS_RETURNED",
        /// Hostage remains withheld.
        HostageRemainsWithheld => "HOSTAGE_REMAINS_WITHHELD",
        /// Weapons storage.
        WeaponsStorage => "WEAPONS_STORAGE",
        /// Weapons manufacture.
        WeaponsManufacture => "WEAPONS_MANUFACTURE",
        /// Weapons import.
        WeaponsImport => "WEAPONS_IMPORT",
        /// Weapons handover.
        WeaponsHandover => "WEAPONS_HANDOVER",
        /// Detention.
        Detention => "DETENTION",
        /// Anything else.
        Other => "OTHER",
    }
}

named_enum! {
    /// Whom casualty figures are about.
    CasualtyGroup("CASUALTY_GROUP_") {
        /// Civilians.
        Civilians => "CIVILIANS",
        /// Members of armed groups.
        Combatants => "COMBATANTS",
        /// Security forces.
        SecurityForces => "SECURITY_FORCES",
        /// Unknown.
        Unknown => "UNKNOWN",
    }
}

/// A claim about who an actor was.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributionClaim {
    /// Who the claim is about.
    pub actor: String,
    /// The claimed affiliation.
    pub affiliation: String,
    /// Who claims it.
    pub claimed_by: PartyId,
}

/// Casualty figures for one group from one claimant.
#[derive(Debug, Clone, PartialEq)]
pub struct CasualtyClaim {
    /// Whom the figures are about.
    pub group: CasualtyGroup,
    /// Killed, if the claimant says.
    pub killed: Option<CountRange>,
    /// Injured, if the claimant says.
    pub injured: Option<CountRange>,
    /// Who claims it.
    pub claimed_by: PartyId,
}

/// A count known as a range: `low <= best <= high`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CountRange {
    low: u32,
    best: Option<u32>,
    high: u32,
}

impl CountRange {
    /// A range, if `low <= best <= high <= MAX_COUNT`.
    pub fn new(low: u32, best: Option<u32>, high: u32) -> Result<CountRange, String> {
        if high < low {
            return Err(format!("high ({high}) must be at least low ({low})"));
        }
        if high > limits::MAX_COUNT {
            return Err(format!("high must be at most {}", limits::MAX_COUNT));
        }
        if let Some(best) = best
            && !(low..=high).contains(&best)
        {
            return Err(format!("best ({best}) must lie between low ({low}) and high ({high})"));
        }
        Ok(CountRange { low, best, high })
    }

    /// The lowest figure.
    pub fn low(&self) -> u32 {
        self.low
    }

    /// The best estimate, if given.
    pub fn best(&self) -> Option<u32> {
        self.best
    }

    /// The highest figure.
    pub fn high(&self) -> u32 {
        self.high
    }

    /// The sum of two ranges, as a claimant's total over groups. The best
    /// estimate survives only when both give one.
    pub fn plus(self, other: CountRange) -> CountRange {
        CountRange {
            low: self.low.saturating_add(other.low),
            best: self.best.zip(other.best).map(|(a, b)| a.saturating_add(b)),
            high: self.high.saturating_add(other.high),
        }
    }

    /// The smallest range covering both: the spread between claimants. It
    /// has no best estimate, since claimants' estimates are not averaged.
    pub fn span(self, other: CountRange) -> CountRange {
        CountRange {
            low: self.low.min(other.low),
            best: None,
            high: self.high.max(other.high),
        }
    }
}

/// A reference to evidence stored elsewhere.
#[derive(Debug, Clone, PartialEq)]
pub struct EvidenceRef {
    /// Where it is.
    pub uri: String,
    /// The SHA-256 of its bytes, lowercase hex.
    pub sha256: String,
    /// Its media type.
    pub media_type: String,
}

impl EvidenceRef {
    /// Checks an evidence URI: http, https or urn.
    pub fn uri(text: &str) -> Result<String, String> {
        if text.starts_with("urn:") {
            let text = bounded_text(text, limits::URI_CHARS, true)?;
            if text.len() > 4 && !text.contains(char::is_whitespace) {
                return Ok(text);
            }
        }
        http_url(text).map_err(|_| "must be an http, https or urn URI without spaces".to_owned())
    }

    /// Checks a SHA-256 digest in lowercase hex.
    pub fn sha256(text: &str) -> Result<String, String> {
        if text.len() == 64 && text.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)) {
            Ok(text.to_owned())
        } else {
            Err("must be a SHA-256 digest: 64 lowercase hex digits".to_owned())
        }
    }

    /// Checks a media type such as `image/jpeg`.
    pub fn media_type(text: &str) -> Result<String, String> {
        let token = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "!#$&-^_.+".contains(c));
        match text.split_once('/') {
            Some((kind, sub)) if text.len() <= limits::MEDIA_TYPE_CHARS && token(kind) && token(sub) => {
                Ok(text.to_ascii_lowercase())
            }
            _ => Err("must be a media type such as \"image/jpeg\"".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_reject_inverted_and_stray_best() {
        assert!(CountRange::new(20, Some(20), 21).is_ok());
        assert!(CountRange::new(21, None, 20).unwrap_err().contains("at least low"));
        assert!(CountRange::new(1, Some(5), 3).unwrap_err().contains("between"));
        assert!(CountRange::new(0, None, limits::MAX_COUNT + 1).is_err());
    }

    #[test]
    fn ranges_sum_and_span_without_averaging() {
        let a = CountRange::new(20, Some(20), 21).unwrap();
        let b = CountRange::new(2, None, 2).unwrap();
        let sum = a.plus(b);
        assert_eq!((sum.low(), sum.best(), sum.high()), (22, None, 23));
        let span = a.span(b);
        assert_eq!((span.low(), span.best(), span.high()), (2, None, 21));
    }

    #[test]
    fn enums_accept_short_and_full_names_only() {
        assert_eq!(Category::from_name("AIR_STRIKE"), Some(Category::AirStrike));
        assert_eq!(Category::from_name("CATEGORY_AIR_STRIKE"), Some(Category::AirStrike));
        assert_eq!(Category::from_name("ZONE_AIR_STRIKE"), None);
        assert_eq!(Category::from_name("air_strike"), None);
    }

    #[test]
    fn text_and_uri_rules() {
        assert!(bounded_text("", 10, true).is_err());
        assert!(bounded_text("abc", 2, false).unwrap_err().contains("at most 2"));
        assert!(bounded_text("a\u{0}b", 10, false).is_err());
        assert!(http_url("https://www.reuters.com/x").is_ok());
        assert!(http_url("ftp://x").is_err());
        assert!(http_url("https://").is_err());
        assert!(EvidenceRef::uri("urn:uuid:123").is_ok());
        assert!(EvidenceRef::sha256(&"a".repeat(64)).is_ok());
        assert!(EvidenceRef::sha256(&"A".repeat(64)).is_err());
        assert!(EvidenceRef::media_type("image/jpeg").is_ok());
        assert!(EvidenceRef::media_type("jpeg").is_err());
    }
}

/// A report as recorded: what was submitted and what the service added.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredReport {
    /// Its id, from the position that recorded it.
    pub report_id: crate::ReportId,
    /// The incident it belongs to.
    pub incident_id: IncidentId,
    /// When the service received it.
    pub received_at: Timestamp,
    /// The report as submitted.
    pub report: Report,
    /// The zone derived from its point, when the deployment has geometry.
    pub derived_zone: Option<Zone>,
    /// The client's idempotency key, if given.
    pub client_report_id: Option<crate::ids::ClientReportId>,
    /// The reporting party's signature, when it signed this version.
    pub signature: Option<ReportSignature>,
    /// 1 as first submitted; each amendment adds one.
    pub version: u32,
    /// The position of the event that recorded this version.
    pub version_position: crate::Position,
    /// Why the reporter amended it into this version.
    pub amendment_reason: Option<String>,
    /// Set once the reporter retracted it.
    pub retraction: Option<Retraction>,
}

/// A reporter's withdrawal of its report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retraction {
    /// The position of the retraction.
    pub position: crate::Position,
    /// When it was recorded.
    pub recorded_at: Timestamp,
    /// Why.
    pub reason: String,
}

/// A reporting party's Ed25519 signature over a report, as verified on
/// receipt: kept so that anyone can check it again later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportSignature {
    /// The party's public key that verified it.
    pub public_key: [u8; 32],
    /// The signature.
    pub signature: [u8; 64],
}

impl StoredReport {
    /// The log position that recorded it.
    pub fn position(&self) -> crate::Position {
        self.report_id.0
    }

    /// True while it counts toward its incident: not retracted.
    pub fn is_current(&self) -> bool {
        self.retraction.is_none()
    }

    /// True when a derived zone contradicts the stated one.
    pub fn zone_disputed(&self) -> bool {
        self.derived_zone.is_some_and(|z| z != self.report.location.zone)
    }

    /// Each claimant's totals in this report: killed and injured summed over
    /// the groups it gives figures for, in order of first mention.
    pub fn claimant_totals(&self) -> Vec<ClaimantTotals> {
        let mut totals: Vec<ClaimantTotals> = Vec::new();
        for claim in &self.report.casualties {
            let entry = match totals.iter_mut().position(|t| t.claimed_by == claim.claimed_by) {
                Some(i) => &mut totals[i],
                None => {
                    totals.push(ClaimantTotals {
                        claimed_by: claim.claimed_by.clone(),
                        killed: None,
                        injured: None,
                    });
                    totals.last_mut().expect("just pushed")
                }
            };
            let add = |sum: Option<CountRange>, part: Option<CountRange>| match (sum, part) {
                (Some(sum), Some(part)) => Some(sum.plus(part)),
                (sum, part) => sum.or(part),
            };
            entry.killed = add(entry.killed, claim.killed);
            entry.injured = add(entry.injured, claim.injured);
        }
        totals
    }
}

/// One claimant's casualty totals within one report.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimantTotals {
    /// Who claims them.
    pub claimed_by: PartyId,
    /// Killed over every group, if any figure was given.
    pub killed: Option<CountRange>,
    /// Injured over every group, if any figure was given.
    pub injured: Option<CountRange>,
}
