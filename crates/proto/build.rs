fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=../../proto");
    let files = [
        "nmos/auth/v1/errors.proto",
        "nmos/auth/v1/common.proto",
        "nmos/auth/v1/events.proto",
        "nmos/auth/v1/keys.proto",
        "nmos/auth/v1/identity.proto",
        "nmos/auth/v1/clients.proto",
        "nmos/auth/v1/tokens.proto",
    ];
    let fds = protox::compile(files, ["../../proto"])?;
    // For gRPC reflection: the services describe themselves to grpcurl and similar tools.
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("nmos_auth_descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    tonic_prost_build::configure().build_server(true).build_client(true).compile_fds(fds)?;
    Ok(())
}
