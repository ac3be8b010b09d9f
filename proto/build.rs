//! Compiles `idlink/v1/*.proto` with protox (pure Rust, no `protoc` to install) and writes a
//! descriptor set for server reflection. Generated code goes to OUT_DIR, never the tree.

use std::{env, path::PathBuf};

const PROTOS: &[&str] = &["idlink/v1/link.proto", "idlink/v1/credit.proto", "idlink/v1/organization.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // tonic-prost-build does not emit rerun-if-changed; without these lines cargo would
    // rerun this script on every change anywhere in the crate, or never for the protos.
    println!("cargo:rerun-if-changed=idlink");
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }

    let out = PathBuf::from(env::var("OUT_DIR")?);
    let descriptors = protox::compile(PROTOS, ["."])?;
    let descriptor_path = out.join("idlink_descriptor.bin");
    std::fs::write(&descriptor_path, prost::Message::encode_to_vec(&descriptors))?;

    tonic_prost_build::configure().file_descriptor_set_path(&descriptor_path).skip_protoc_run().compile_fds(descriptors)?;
    Ok(())
}
