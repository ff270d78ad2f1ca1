//! The wire contract.
#![allow(missing_docs)]
pub mod v1 {
    tonic::include_proto!("truce.v1");
}
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/truce_descriptor.bin"));
