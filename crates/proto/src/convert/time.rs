use truce_domain::Timestamp;

/// A wire timestamp as a domain one, if representable.
pub fn timestamp_from_wire(wire: &prost_types::Timestamp) -> Result<Timestamp, String> {
    Timestamp::from_parts(wire.seconds, wire.nanos)
        .ok_or_else(|| "must be a valid timestamp between the years 1678 and 2262".to_owned())
}

/// A domain timestamp on the wire.
pub fn timestamp_to_wire(t: Timestamp) -> prost_types::Timestamp {
    let (seconds, nanos) = t.to_parts();
    prost_types::Timestamp { seconds, nanos }
}
