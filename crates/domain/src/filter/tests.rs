use super::*;
use crate::{incident::IncidentSummary, testing::report_at};

fn incident(shape: impl FnOnce(crate::testing::Draft) -> crate::testing::Draft) -> IncidentSummary {
    IncidentSummary::open(&report_at(7, shape), Timestamp(0))
}

fn matches(filter: &str, i: &IncidentSummary) -> bool {
    Filter::parse(filter)
        .unwrap_or_else(|e| panic!("{filter}: {e}"))
        .matches(i)
}

#[test]
fn the_documented_examples_parse_and_match() {
    let strike = incident(|r| {
        r.category(Category::AirStrike)
            .in_area("Rafah")
            .at_point(31.3, 34.25)
            .with_killed("gaza-health-ministry", 20, 21)
    });
    assert!(matches(
        "category = AIR_STRIKE AND zone = AT_LINE AND killed_high >= 10",
        &strike
    ));
    assert!(matches("area = \"Rafah\"", &strike));
    assert!(matches("area = 'rafah'", &strike));
    assert!(matches("reporter = \"idf\" OR responsible = \"hamas\"", &strike));
    assert!(matches(
        "bbox(34.2, 31.2, 34.4, 31.4) AND occurred >= \"2025-11-22T00:00:00Z\"",
        &strike
    ));
    assert!(!matches("bbox(34.4, 31.4, 34.5, 31.5)", &strike));
    assert!(!matches("killed_low > 20", &strike));
    assert!(matches("NOT status = CONFIRMED_BREACH", &strike));
    assert!(matches("-category = LINE_CROSSING", &strike));
    assert!(matches("category:CATEGORY_AIR_STRIKE", &strike));
    // Enum values in any case, like area.
    assert!(matches("category = air_strike AND status = reported", &strike));
    assert!(matches(
        "category = category_air_strike AND zone != Israeli_Controlled",
        &strike
    ));
    assert!(matches("id = inc-7 AND report_count = 1", &strike));
    assert!(matches("", &strike));
}

#[test]
fn or_binds_tighter_than_and() {
    let crossing = incident(|r| r.in_area("Rafah"));
    // a AND b OR c == a AND (b OR c): false AND (...) is false.
    assert!(!matches(
        "category = AIR_STRIKE AND area = \"Rafah\" OR area = \"Gaza\"",
        &crossing
    ));
    assert!(matches(
        "(category = AIR_STRIKE AND area = \"Gaza\") OR area = \"Rafah\"",
        &crossing
    ));
}

#[test]
fn occurred_tests_the_window() {
    let i = incident(|r| r.hours(10));
    assert!(matches("occurred >= \"2025-11-22T10:00:00Z\"", &i));
    assert!(!matches("occurred > \"2025-11-22T10:00:00Z\"", &i));
    assert!(matches("occurred < \"2025-11-22T10:00:01Z\"", &i));
}

#[test]
fn errors_say_where_and_why() {
    let cases = [
        ("zonee = AT_LINE", 1, "unknown field \"zonee\""),
        ("zone = ATLINE", 8, "unknown value \"ATLINE\""),
        ("killed_high >= ten", 16, "not a whole number"),
        ("category < AIR_STRIKE", 10, "takes only =, != or :"),
        ("area = \"Rafah", 8, "unterminated string"),
        ("category = AIR_STRIKE AND", 26, "found the end of the filter"),
        ("(area = x", 10, "expected ')'"),
        ("area = x area = y", 10, "join restrictions with AND or OR"),
        ("occurred >= yesterday", 13, "RFC 3339"),
        ("reporter = IDF", 12, "party id"),
        ("bbox(1, 2, 3)", 13, "expected ','"),
        ("bbox(34.4, 31.2, 34.2, 31.4)", 1, "west <= east"),
        ("area ! x", 6, "'!' must be followed by '='"),
        ("AND", 1, "keyword AND"),
        ("area = Gaza Strip", 13, "quote a value that has spaces: \"Gaza Strip\""),
        (
            "(area = Khan Younis camp) OR zone = AT_LINE",
            14,
            "quote a value that has spaces: \"Khan Younis camp\"",
        ),
        ("category = airstrike", 12, "unknown value \"airstrike\""),
    ];
    for (filter, column, message) in cases {
        let err = Filter::parse(filter).expect_err(filter);
        assert_eq!(err.column, column, "{filter}: {err}");
        assert!(err.message.contains(message), "{filter}: {err}");
    }
}

#[test]
fn nesting_and_length_are_bounded() {
    let deep = format!("{}area = x{}", "(".repeat(40), ")".repeat(40));
    assert!(Filter::parse(&deep).unwrap_err().message.contains("nested deeper"));
    let long = "area = x OR ".repeat(500) + "area = y";
    assert!(Filter::parse(&long).unwrap_err().message.contains("longer than"));
}

#[test]
fn every_required_key_is_one_a_matching_incident_is_indexed_by() {
    let strike = incident(|r| {
        r.category(Category::AirStrike)
            .in_area("Rafah")
            .at_point(31.3, 34.25)
            .with_killed("gaza-health-ministry", 20, 21)
    });
    let keys = IndexKey::of(&strike);
    for text in [
        "category = AIR_STRIKE AND area = \"RAFAH\" AND killed_high >= 10",
        "area = 'rafah'",
        "status = REPORTED AND reporter = \"idf\"",
        "zone = AT_LINE AND NOT category = SHELLING",
    ] {
        let filter = Filter::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert!(filter.matches(&strike), "{text}");
        let required = filter.required_keys();
        assert!(!required.is_empty(), "{text} names a value to look up");
        for key in required {
            assert!(keys.contains(&key), "{text}: {key:?} not among {keys:?}");
        }
    }
    // Nothing to narrow by: alternatives, negations, inequalities, ranges.
    for text in [
        "",
        "reporter = \"idf\" OR responsible = \"hamas\"",
        "NOT status = CONFIRMED_BREACH",
        "category != SHELLING",
        "killed_high >= 10",
    ] {
        let filter = Filter::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(filter.required_keys(), Vec::new(), "{text}");
    }
}
