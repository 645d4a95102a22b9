//! Generates the prost types from `proto/` at build time, with no `protoc` to install:
//! `protox` (pure Rust) parses the .proto files into a FileDescriptorSet and prost-build
//! turns that into Rust.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest_dir.join("../../proto");
    let events = proto_root.join("aftersales/ticket/v1/events.proto");

    println!("cargo:rerun-if-changed={}", proto_root.display());
    println!("cargo:rerun-if-changed={}", events.display());

    let fds = protox::compile([&events], [&proto_root])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
