//! Compiles `proto/truce/v1` with protox (pure Rust, no system `protoc`) and
//! writes the descriptor set that server reflection serves.

use std::{env, fs, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [
        "truce/v1/report.proto",
        "truce/v1/incident.proto",
        "truce/v1/ingest_service.proto",
        "truce/v1/query_service.proto",
        "truce/v1/log_service.proto",
        // Only for the descriptor set: tonic-types supplies the Rust types.
        "google/rpc/error_details.proto",
    ];
    let fds = protox::compile(files, [&root])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("truce_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed={}", root.display());
    Ok(())
}
