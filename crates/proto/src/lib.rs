//! Generated gRPC code for the `nmos.auth.v1` package (see `proto/nmos/auth/v1/`).
//! build.rs compiles the `.proto` files with protox, so no `protoc` is needed.
#![forbid(unsafe_code)]

#[allow(clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("nmos.auth.v1");
}

pub use v1::*;

/// The encoded `FileDescriptorSet` of every `nmos.auth.v1` file, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/nmos_auth_descriptor.bin"));
