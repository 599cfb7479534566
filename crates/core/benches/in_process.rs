//! What one internal call costs inside one process, beside the same call made directly.
//!
//! `cargo bench -p nmos-auth-core --bench in_process [-- CALLS]` times a unary call (the
//! health check, a message of a few bytes each way) through [`grpc::in_process`], as the
//! gateway calls the token issuer and the token issuer calls the registry and the keys in
//! `serve`: protobuf encoding both ways, tonic's request and response bodies and headers, the
//! deadline and trace headers, the per-call metrics. Beside it, the same method called on the
//! service directly, which is what the internal call adds to.
use std::time::Instant;

use nmos_auth_core::grpc;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::Health;

fn main() {
    let calls: u32 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(200_000);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let (reporter, server) = tonic_health::server::health_reporter();
        reporter.set_service_status("", tonic_health::ServingStatus::Serving).await;
        let mut client = HealthClient::new(grpc::in_process(server));
        let direct = tonic_health::server::HealthService::from_health_reporter(reporter);
        let request = || HealthCheckRequest { service: String::new() };

        // Warm up both paths (allocator, caches), then time each.
        for _ in 0..10_000 {
            client.check(request()).await.unwrap();
            direct.check(tonic::Request::new(request())).await.unwrap();
        }
        let started = Instant::now();
        for _ in 0..calls {
            client.check(request()).await.unwrap();
        }
        let through = started.elapsed().as_secs_f64() / f64::from(calls);
        let started = Instant::now();
        for _ in 0..calls {
            direct.check(tonic::Request::new(request())).await.unwrap();
        }
        let called = started.elapsed().as_secs_f64() / f64::from(calls);
        println!("{calls} calls, one thread");
        println!("through grpc::in_process  {:6.2} µs a call", through * 1e6);
        println!("the method called directly {:6.2} µs a call", called * 1e6);
        println!("the internal call adds     {:6.2} µs", (through - called) * 1e6);
    });
}
