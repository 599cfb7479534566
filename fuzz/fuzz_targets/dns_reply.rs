//! A DNS server's replies: to the discovery sidecar's signed RFC 2136 updates, read and checked
//! (RFC 8945 TSIG) before anything in them is believed; and to the unicast DNS-SD lookups of the
//! resource-server crate and the checker (PTR, SRV, TXT, A and AAAA answers).
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use nmos_auth_core::Config;
use nmos_auth_core::secret::Secret;
use nmos_auth_discovery::DnsUpdater;
use nmos_auth_resource_server::dns;

fn updater() -> &'static DnsUpdater {
    static UPDATER: OnceLock<DnsUpdater> = OnceLock::new();
    UPDATER.get_or_init(|| {
        let mut config = Config::default();
        config.dns_sd_update_server = Some("127.0.0.1:53".parse().unwrap());
        config.dns_sd_domain = Some("plant.example".into());
        config.dns_sd_tsig_key = Some("nmos-auth".into());
        config.dns_sd_tsig_secret = Some(Secret::new("c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ=="));
        DnsUpdater::from_config(&config).unwrap().unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    // The reply answers the id in its first two bytes, so that the fuzzer gets past that check.
    let id = [data.first().copied().unwrap_or(0), data.get(1).copied().unwrap_or(0)];
    let _ = updater().check_reply_for_fuzzing(data, id, b"the request's MAC", 1_796_000_000);
    for rtype in [dns::PTR, dns::SRV, dns::TXT, dns::A, dns::AAAA] {
        let _ = dns::read_reply(data, u16::from_be_bytes(id), rtype);
    }
});
