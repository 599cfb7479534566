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

impl ClientKind {
    /// Each kind a client has, by the name people (the pages, the CLI) and the registry's store
    /// use for it.
    pub const NAMED: [(ClientKind, &'static str); 3] =
        [(ClientKind::Machine, "machine"), (ClientKind::Confidential, "confidential"), (ClientKind::Public, "public")];

    /// The kind's name; `None` for `Unspecified`.
    pub fn name(self) -> Option<&'static str> {
        Self::NAMED.iter().find(|(kind, _)| *kind == self).map(|(_, name)| *name)
    }

    pub fn from_name(name: &str) -> Option<ClientKind> {
        Self::NAMED.iter().find(|(_, n)| *n == name).map(|(kind, _)| *kind)
    }
}

impl ClientStatus {
    /// Each status a client has, by the name people (the pages, the CLI) and the registry's
    /// store use for it.
    pub const NAMED: [(ClientStatus, &'static str); 3] = [
        (ClientStatus::Approved, "approved"),
        (ClientStatus::Pending, "pending"),
        (ClientStatus::Disabled, "disabled"),
    ];

    /// The status's name; `None` for `Unspecified`.
    pub fn name(self) -> Option<&'static str> {
        Self::NAMED.iter().find(|(status, _)| *status == self).map(|(_, name)| *name)
    }

    pub fn from_name(name: &str) -> Option<ClientStatus> {
        Self::NAMED.iter().find(|(_, n)| *n == name).map(|(status, _)| *status)
    }
}
