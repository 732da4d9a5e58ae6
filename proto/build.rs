//! Compiles `proto/flowserver/v1/flowserver.proto` with protox (pure Rust), so
//! building needs no `protoc` on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/flowserver/v1/flowserver.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("flowserver_descriptor.bin"), prost::Message::encode_to_vec(&descriptors))?;
    // Decode failures are the client's fault (INVALID_ARGUMENT), not INTERNAL: see `codec.rs`.
    tonic_prost_build::configure().codec_path("crate::codec::FlowCodec").compile_fds(descriptors)?;
    Ok(())
}
