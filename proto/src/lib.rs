//! The idlink gRPC contract. Both the server and the client are built from this crate, so
//! they cannot drift apart.

#[expect(clippy::all, clippy::allow_attributes_without_reason, reason = "generated code")]
pub mod v1 {
    tonic::include_proto!("idlink.v1");
}

pub mod locale;

/// Encoded `FileDescriptorSet` of the public services, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/idlink_descriptor.bin"));
