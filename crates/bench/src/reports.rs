//! Realistic reports for every workload: the parties, places and kinds of
//! event of the source article, 300 to 500 bytes encoded, each one far
//! enough from every other in place or time to open its own incident, so a
//! run of N reports makes N incidents and filters select known fractions.

use prost::Message;
use truce_proto::v1;

/// Places of the Gaza Strip with a representative point, pairwise more than
/// the grouping distance (3 km) apart.
pub(crate) const AREAS: [(&str, f64, f64); 8] = [
    ("Beit Hanoun", 31.5387, 34.5402),
    ("Jabalia", 31.5290, 34.4790),
    ("Gaza City", 31.5017, 34.4350),
    ("Bureij", 31.4380, 34.4030),
    ("Deir al-Balah", 31.4180, 34.3500),
    ("Khan Younis", 31.3460, 34.3030),
    ("Rafah", 31.2969, 34.2436),
    ("Al-Mawasi", 31.3700, 34.2500),
];

/// Every category a report can name, with a plain account of such an event.
const CATEGORIES: [(v1::Category, &str); 12] = [
    (v1::Category::LineCrossing, "Armed men crossed the yellow line"),
    (v1::Category::SmallArmsFire, "Gunfire exchanged near the line"),
    (v1::Category::AirStrike, "A drone strike hit a vehicle"),
    (v1::Category::Shelling, "Tank shells landed near shelters"),
    (
        v1::Category::ExplosiveDevice,
        "An explosive device detonated by a patrol",
    ),
    (
        v1::Category::CorridorMisuse,
        "The aid corridor was used to move fighters",
    ),
    (v1::Category::AidObstruction, "Aid trucks were held at the crossing"),
    (
        v1::Category::MonitorAccessDenied,
        "Monitors were refused access to the site",
    ),
    (v1::Category::TunnelActivity, "Fighters emerged from a tunnel shaft"),
    (
        v1::Category::HostageRemainsWithheld,
        "Remains of a hostage were not handed over",
    ),
    (v1::Category::Detention, "Fishermen were detained off the coast"),
    (v1::Category::WeaponsStorage, "A weapons cache was found in a school"),
];

/// Who reports, and whom each usually accuses.
const PARTIES: [(&str, &str); 4] = [
    ("idf", "hamas"),
    ("hamas", "idf"),
    ("gaza-health-ministry", "idf"),
    ("un-ocha", "unknown"),
];

const OUTLETS: [&str; 4] = ["Reuters", "The Media Line", "ynet", "Al Jazeera"];

/// The slots of one (category, area) pair are this far apart in time: more
/// than the grouping gap of 6 hours.
const SLOT_SECONDS: i64 = 7 * 3600;

/// 2025-11-22T12:00:00Z, the day of the article; reports go back from it.
const LATEST: i64 = 1_763_812_800;

/// The category of report `n`.
pub(crate) fn category(n: u64) -> v1::Category {
    CATEGORIES[(n % CATEGORIES.len() as u64) as usize].0
}

/// The area of report `n`.
pub(crate) fn area(n: u64) -> &'static str {
    AREAS[((n / CATEGORIES.len() as u64) % AREAS.len() as u64) as usize].0
}

/// The reporting party of report `n`.
pub(crate) fn reporter(n: u64) -> &'static str {
    PARTIES[((n / 7) % PARTIES.len() as u64) as usize].0
}

/// A small deterministic mix of `n`, for the details that vary.
fn mix(n: u64) -> u64 {
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 31;
    x.wrapping_mul(0xBF58_476D_1CE4_E5B9) ^ (x >> 29)
}

/// Report number `n`: distinct from every other in (category, place, time).
pub(crate) fn report(n: u64) -> v1::Report {
    let per_slot = (CATEGORIES.len() * AREAS.len()) as u64;
    let (category, account) = CATEGORIES[(n % CATEGORIES.len() as u64) as usize];
    let (area, latitude, longitude) = AREAS[((n / CATEGORIES.len() as u64) % AREAS.len() as u64) as usize];
    let (party, accused) = PARTIES[((n / 7) % PARTIES.len() as u64) as usize];
    let r = mix(n);
    let occurred = LATEST - (n / per_slot) as i64 * SLOT_SECONDS - (r % 600) as i64;
    let killed = (r >> 8) % 4;
    let injured = killed + (r >> 12) % 6;
    let jitter = |shift: u32| ((r >> shift) % 200) as f64 / 100_000.0;
    let zone = [
        v1::Zone::PalestinianControlled,
        v1::Zone::AtLine,
        v1::Zone::IsraeliControlled,
        v1::Zone::HumanitarianCorridor,
    ][((r >> 20) % 4) as usize];
    v1::Report {
        reporting_party: party.to_owned(),
        sources: vec![v1::Source {
            outlet: OUTLETS[((r >> 24) % OUTLETS.len() as u64) as usize].to_owned(),
            url: format!("https://news.example.org/gaza/{n}"),
            published_at: Some(prost_types::Timestamp {
                seconds: occurred + 3 * 3600,
                nanos: 0,
            }),
        }],
        occurred_at: Some(prost_types::Timestamp {
            seconds: occurred,
            nanos: 0,
        }),
        occurred_precision: v1::TimePrecision::Hour as i32,
        location: Some(v1::Location {
            point: Some(v1::LatLng {
                latitude: latitude + jitter(28),
                longitude: longitude + jitter(36),
            }),
            area: area.to_owned(),
            zone: zone as i32,
            precision: v1::LocationPrecision::Near as i32,
        }),
        category: category as i32,
        summary: format!("{account} in {area}; {}", crate::stamp::tail(n)),
        alleged_responsible: vec![accused.to_owned()],
        attributions: vec![v1::AttributionClaim {
            actor: "an armed group".to_owned(),
            affiliation: accused.to_owned(),
            claimed_by: party.to_owned(),
        }],
        casualties: vec![v1::CasualtyClaim {
            group: v1::CasualtyGroup::Civilians as i32,
            killed: Some(v1::CountRange {
                low: killed as u32,
                best: None,
                high: (killed + (r >> 44) % 3) as u32,
            }),
            injured: Some(v1::CountRange {
                low: injured as u32,
                best: None,
                high: (injured + 2) as u32,
            }),
            claimed_by: party.to_owned(),
        }],
        evidence: vec![v1::EvidenceRef {
            uri: format!("https://evidence.example.org/{n}.jpg"),
            sha256: format!("{:016x}{:016x}{:016x}{:016x}", r, mix(r), mix(r ^ 1), mix(r ^ 2)),
            media_type: "image/jpeg".to_owned(),
        }],
        incident_id: String::new(),
    }
}

/// A submission of report `n` under a key unique to `run`.
pub(crate) fn request(run: &str, n: u64) -> v1::SubmitReportRequest {
    v1::SubmitReportRequest {
        client_report_id: format!("{run}-{n}"),
        report: Some(report(n)),
        signature: Vec::new(),
    }
}

/// The encoded report `n`: the payload the peers store, byte for byte what
/// truce stores of it.
pub(crate) fn payload(n: u64) -> Vec<u8> {
    report(n).encode_to_vec()
}

/// The filters subscribers use, mixed: a quarter see everything, the rest a
/// category, an area or a reporting party. Returns the filter text and a
/// test telling which reports it selects.
pub(crate) fn subscriber_filter(i: usize) -> (String, Box<dyn Fn(u64) -> bool + Send + Sync>) {
    match i % 4 {
        0 => (String::new(), Box::new(|_| true)),
        1 => {
            let wanted = category(i as u64 / 4);
            let name = wanted.as_str_name().trim_start_matches("CATEGORY_").to_owned();
            (format!("category = {name}"), Box::new(move |n| category(n) == wanted))
        }
        2 => {
            let wanted = AREAS[(i / 4) % AREAS.len()].0;
            (format!("area = \"{wanted}\""), Box::new(move |n| area(n) == wanted))
        }
        _ => {
            let wanted = PARTIES[(i / 4) % PARTIES.len()].0;
            (
                format!("reporter = \"{wanted}\""),
                Box::new(move |n| reporter(n) == wanted),
            )
        }
    }
}

/// The smallest and largest encoded size of the first `count` reports.
pub(crate) fn size_range(count: u64) -> (usize, usize) {
    (0..count)
        .map(|n| payload(n).len())
        .fold((usize::MAX, 0), |(low, high), size| (low.min(size), high.max(size)))
}

/// The etcd key prefix and key of report `n`: the same selection by
/// category that a `category = X` filter makes, by key prefix.
pub(crate) fn etcd_key(n: u64) -> Vec<u8> {
    format!("/reports/{}/{n:012}", category(n) as i32).into_bytes()
}
