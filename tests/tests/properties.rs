//! Property tests on the borders where untrusted bytes come in: report
//! validation and the decoding of stored events. No input panics; what is
//! accepted converts back to exactly what was sent (report signatures rely
//! on it); and through the real service, random input is either stored
//! whole or refused with nothing stored.

use proptest::{collection::vec, option, prelude::*};
use prost::Message;
use truce_domain::Timestamp;
use truce_proto::{
    convert::{Received, event_from_wire, event_to_wire, report_from_wire},
    v1,
};

/// Text that is sometimes valid and sometimes not: ids, names, blanks,
/// control characters, long runs, arbitrary Unicode.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("idf".to_owned()),
        Just("hamas".to_owned()),
        Just("gaza-health-ministry".to_owned()),
        Just("Rafah".to_owned()),
        Just("inc-1".to_owned()),
        Just("inc-01".to_owned()),
        Just("IDF".to_owned()),
        Just(" ".to_owned()),
        Just("a\u{0}b".to_owned()),
        Just("https://www.reuters.com/x".to_owned()),
        Just("ftp://x".to_owned()),
        Just("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".to_owned()),
        "[a-z0-9._-]{0,70}",
        any::<String>(),
        ".{190,210}",
    ]
}

fn timestamp() -> impl Strategy<Value = Option<prost_types::Timestamp>> {
    option::of(
        (
            prop_oneof![
                Just(1_763_800_000i64),
                -70_000_000_000i64..300_000_000_000,
                any::<i64>()
            ],
            prop_oneof![Just(0i32), 0..1_000_000_000, any::<i32>()],
        )
            .prop_map(|(seconds, nanos)| prost_types::Timestamp { seconds, nanos }),
    )
}

fn number() -> impl Strategy<Value = f64> {
    prop_oneof![
        -200.0..200.0f64,
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(-0.0),
        any::<f64>()
    ]
}

fn enumeration() -> impl Strategy<Value = i32> {
    prop_oneof![0..20i32, any::<i32>()]
}

fn range() -> impl Strategy<Value = Option<v1::CountRange>> {
    option::of(
        (0..2_000_000u32, option::of(0..2_000_000u32), 0..2_000_000u32).prop_map(|(low, best, high)| v1::CountRange {
            low,
            best,
            high,
        }),
    )
}

/// Wire reports from valid to nonsense: a valid report with each field
/// replaced, now and then, by a random one.
fn report() -> impl Strategy<Value = v1::Report> {
    (random_report(), vec(prop::bool::weighted(0.08), 12)).prop_map(|(random, replace)| {
        let mut report = truce_tests::crossing_report();
        let r = |i: usize| replace[i];
        if r(0) {
            report.reporting_party = random.reporting_party;
        }
        if r(1) {
            report.sources = random.sources;
        }
        if r(2) {
            report.occurred_at = random.occurred_at;
        }
        if r(3) {
            report.occurred_precision = random.occurred_precision;
        }
        if r(4) {
            report.location = random.location;
        }
        if r(5) {
            report.category = random.category;
        }
        if r(6) {
            report.summary = random.summary;
        }
        if r(7) {
            report.alleged_responsible = random.alleged_responsible;
        }
        if r(8) {
            report.attributions = random.attributions;
        }
        if r(9) {
            report.casualties = random.casualties;
        }
        if r(10) {
            report.evidence = random.evidence;
        }
        if r(11) {
            report.incident_id = random.incident_id;
        }
        report
    })
}

/// Wire reports with every field random.
fn random_report() -> impl Strategy<Value = v1::Report> {
    let sources = vec(
        (text(), text(), timestamp()).prop_map(|(outlet, url, published_at)| v1::Source {
            outlet,
            url,
            published_at,
        }),
        0..3,
    );
    let location = option::of(
        (
            option::of((number(), number()).prop_map(|(latitude, longitude)| v1::LatLng { latitude, longitude })),
            text(),
            enumeration(),
            enumeration(),
        )
            .prop_map(|(point, area, zone, precision)| v1::Location {
                point,
                area,
                zone,
                precision,
            }),
    );
    let attributions = vec(
        (text(), text(), text()).prop_map(|(actor, affiliation, claimed_by)| v1::AttributionClaim {
            actor,
            affiliation,
            claimed_by,
        }),
        0..3,
    );
    let casualties = vec(
        (enumeration(), range(), range(), text()).prop_map(|(group, killed, injured, claimed_by)| v1::CasualtyClaim {
            group,
            killed,
            injured,
            claimed_by,
        }),
        0..3,
    );
    let evidence = vec(
        (text(), text(), text()).prop_map(|(uri, sha256, media_type)| v1::EvidenceRef {
            uri,
            sha256,
            media_type,
        }),
        0..2,
    );
    (
        (text(), sources, timestamp(), enumeration(), location),
        (
            enumeration(),
            text(),
            vec(text(), 0..3),
            attributions,
            casualties,
            evidence,
            text(),
        ),
    )
        .prop_map(
            |(
                (reporting_party, sources, occurred_at, occurred_precision, location),
                (category, summary, alleged_responsible, attributions, casualties, evidence, incident_id),
            )| v1::Report {
                reporting_party,
                sources,
                occurred_at,
                occurred_precision,
                location,
                category,
                summary,
                alleged_responsible,
                attributions,
                casualties,
                evidence,
                incident_id,
            },
        )
}

/// A valid report, to mutate.
fn valid_event_bytes() -> Vec<u8> {
    use truce_domain::event::{EventBody, RecordedEvent, ReportRecorded};
    let wire = truce_tests::crossing_report();
    let report = report_from_wire(&wire, "report", Received::Stored).expect("valid");
    let stored = truce_domain::report::StoredReport {
        report_id: truce_domain::ReportId(truce_domain::Position(1)),
        incident_id: truce_domain::IncidentId(truce_domain::Position(1)),
        received_at: Timestamp(1_763_800_000_000_000_000),
        report,
        derived_zone: None,
        client_report_id: None,
        signature: None,
        version: 1,
        version_position: truce_domain::Position(1),
        amendment_reason: None,
        retraction: None,
    };
    let incident = truce_domain::incident::IncidentSummary::open(&stored, Timestamp(1_763_800_000_000_000_000));
    event_to_wire(&RecordedEvent {
        position: truce_domain::Position(1),
        recorded_at: Timestamp(1_763_800_000_000_000_000),
        body: EventBody::ReportRecorded(ReportRecorded {
            report: stored.into(),
            opened_incident: true,
            incident: incident.into(),
            content_digest: [7; 32],
            previous_position: None,
        }),
    })
}

proptest! {
    // Failures print their minimal case; there is no source tree to
    // persist them in beside an integration test.
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    /// Validation never panics, and an accepted report converts back to
    /// exactly the message that was sent: what is stored is what was
    /// signed.
    #[test]
    fn validation_never_panics_and_accepted_reports_round_trip(wire in report()) {
        let received = Received::At(Timestamp(1_800_000_000_000_000_000));
        if let Ok(report) = report_from_wire(&wire, "report", received) {
            let back = v1::Report::from(&report);
            prop_assert_eq!(back.encode_to_vec(), wire.encode_to_vec());
        }
    }

    /// Any bytes at all: decoding a stored event fails cleanly or succeeds.
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in vec(any::<u8>(), 0..600), position in 0u64..4) {
        let _ = event_from_wire(position, &bytes);
    }

    /// A valid event with bytes flipped, cut or inserted: decoding fails
    /// cleanly, or yields an event that encodes and decodes to itself.
    #[test]
    fn damaged_events_fail_cleanly_or_round_trip(
        edits in vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
    ) {
        let mut bytes = valid_event_bytes();
        for (at, value, how) in edits {
            if bytes.is_empty() {
                break;
            }
            let i = at.index(bytes.len());
            match how {
                0 => bytes[i] ^= value.max(1),
                1 => bytes.truncate(i),
                _ => bytes.insert(i, value),
            }
        }
        if let Ok(event) = event_from_wire(1, &bytes) {
            let again = event_from_wire(1, &event_to_wire(&event));
            prop_assert_eq!(again.as_ref(), Ok(&event));
        }
    }
}

/// Through the real service: random reports are each either acknowledged
/// or refused with INVALID_ARGUMENT naming fields, and afterwards the log
/// holds exactly the acknowledged ones, each whole (`truce verify` reads and
/// checks every event).
#[tokio::test]
async fn random_submissions_are_stored_whole_or_not_at_all() {
    use proptest::{strategy::ValueTree, test_runner::TestRunner};
    let dir = tempfile::tempdir().expect("temp dir");
    let pair = truce_tests::Pair::start(dir.path()).await;
    let mut ingest = pair.ingest_client().await;
    let mut runner = TestRunner::deterministic();
    let strategy = report();
    let (mut accepted, mut refused) = (0u64, 0u64);
    for _ in 0..300 {
        let wire = strategy.new_tree(&mut runner).expect("a report").current();
        match ingest.submit_report(truce_tests::request("", wire)).await {
            Ok(response) => {
                accepted += 1;
                assert_eq!(response.into_inner().position, accepted, "positions stay gapless");
            }
            Err(status) => {
                refused += 1;
                assert!(
                    matches!(status.code(), tonic::Code::InvalidArgument | tonic::Code::NotFound),
                    "{status:?}"
                );
                if status.code() == tonic::Code::InvalidArgument {
                    assert!(!truce_tests::violations(&status).is_empty(), "{status:?}");
                }
            }
        }
    }
    // The generator reaches both sides.
    assert!(refused > 0, "nothing refused");
    // A valid report after all that still goes in.
    let last = ingest
        .submit_report(truce_tests::request("", truce_tests::crossing_report()))
        .await
        .expect("valid report")
        .into_inner();
    assert_eq!(last.position, accepted + 1);
    pair.stop().await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_truce-testbed"))
        .arg("verify")
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .await
        .expect("run truce verify");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        stdout.contains(&format!("verified {} entries", accepted + 1)),
        "{stdout}"
    );
}
