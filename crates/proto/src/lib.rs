//! The `truce.v1` wire contract and its border with the domain.
//!
//! [`v1`] holds the types and service stubs generated from `proto/` (by
//! protox, so building needs no system `protoc`); [`FILE_DESCRIPTOR_SET`]
//! is what server reflection serves. [`convert`] turns loose wire messages
//! into strict domain types exactly once, on receipt, naming every invalid
//! field, and domain types back into wire messages. [`ingest`] and
//! [`query`] convert each service's requests into the domain's commands
//! and queries, and their answers back. [`ServiceError`] is the one place
//! where failures become gRPC status codes.

pub mod convert;
mod error;
pub mod frame;
pub mod ingest;
pub mod query;

/// Generated `truce.v1` messages and services.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod v1 {
    tonic::include_proto!("truce.v1");
}

/// The encoded `FileDescriptorSet` of every `truce.v1` file, for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/truce_descriptor.bin"));

pub use error::ServiceError;
