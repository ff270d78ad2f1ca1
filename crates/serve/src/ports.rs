//! Which gRPC services each port serves. A port lists only its own
//! services (and health and reflection) through reflection, and a call
//! that reaches the wrong port is told which port serves it, instead of a
//! bare `UNIMPLEMENTED`.

use std::net::SocketAddr;

use tonic::{body::Body, service::RoutesBuilder};

/// The two kinds of truce port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// `truce.v1.IngestService` and `truce.v1.LogService`.
    Ingest,
    /// `truce.v1.QueryService`.
    Query,
}

/// The services every port serves besides its own.
const SHARED: [&str; 3] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

impl Port {
    /// The truce services this port serves.
    pub(crate) fn services(self) -> &'static [&'static str] {
        match self {
            Port::Ingest => &["truce.v1.IngestService", "truce.v1.LogService"],
            Port::Query => &["truce.v1.QueryService"],
        }
    }

    fn other(self) -> Port {
        match self {
            Port::Ingest => Port::Query,
            Port::Query => Port::Ingest,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Port::Ingest => "ingest",
            Port::Query => "query",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Port::Ingest => 50051,
            Port::Query => 50052,
        }
    }
}

/// What a call for an unknown path on `port` is told: where its service
/// is served, when it is a truce service (`other` is the other port's
/// address, when this process knows it). Only known service names are
/// repeated back, never the caller's path.
pub(crate) fn wrong_port_message(port: Port, other: Option<SocketAddr>, path: &str) -> String {
    let here = port.services().join(", ");
    let service = path.trim_start_matches('/').split('/').next().unwrap_or_default();
    let elsewhere = port.other();
    if elsewhere.services().contains(&service) {
        let place = match other {
            Some(address) => format!("the {} port, {address}", elsewhere.name()),
            None => format!(
                "the {} service's port (`truce {}`; {} by default)",
                elsewhere.name(),
                elsewhere.name(),
                elsewhere.default_port()
            ),
        };
        format!(
            "{service} is served on {place}, not on this {} port, which serves {here}",
            port.name()
        )
    } else {
        format!("no such method on this {} port, which serves {here}", port.name())
    }
}

/// The routes every truce server starts with, for `port`: `grpc.health.v1`
/// (the reporter marks each service as it is added), server reflection (v1,
/// and v1alpha for older clients) listing only what this port serves, and
/// the answer to calls for anything else. Reflection still describes every
/// truce message and service, so that grpcurl, pointed at the wrong port,
/// sends the call and prints where to go, rather than failing to find the
/// service's descriptor.
pub(crate) fn base_routes(
    port: Port,
    other: Option<SocketAddr>,
) -> Result<(tonic_health::server::HealthReporter, RoutesBuilder), tonic_reflection::server::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    let fallback = move |uri: axum::http::Uri| {
        let message = wrong_port_message(port, other, uri.path());
        async move {
            let (parts, ()) = tonic::Status::unimplemented(message).into_http::<()>().into_parts();
            axum::http::Response::from_parts(parts, Body::empty())
        }
    };
    let mut routes = RoutesBuilder::from(axum::Router::new().fallback(fallback));
    routes.add_service(health_service);
    let reflection = || {
        let mut builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(truce_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        for name in port.services().iter().chain(&SHARED) {
            builder = builder.with_service_name(*name);
        }
        builder
    };
    routes.add_service(reflection().build_v1()?);
    routes.add_service(reflection().build_v1alpha()?);
    Ok((health, routes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wrong_port_names_the_right_one() {
        let other: SocketAddr = "127.0.0.1:50052".parse().expect("address");
        assert_eq!(
            wrong_port_message(Port::Ingest, Some(other), "/truce.v1.QueryService/ListIncidents"),
            "truce.v1.QueryService is served on the query port, 127.0.0.1:50052, not on this ingest port, \
             which serves truce.v1.IngestService, truce.v1.LogService"
        );
        assert!(
            wrong_port_message(Port::Query, None, "/truce.v1.IngestService/SubmitReport")
                .starts_with("truce.v1.IngestService is served on the ingest service's port (`truce ingest`; 50051")
        );
        let unknown = wrong_port_message(Port::Query, None, &format!("/{}/x", "a".repeat(10_000)));
        assert_eq!(
            unknown,
            "no such method on this query port, which serves truce.v1.QueryService"
        );
    }
}
