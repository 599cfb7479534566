//! DNS-SD (mDNS) discovery of `_nmos-auth._tcp` authorization servers (IS-10 §3).
use std::time::Duration;

use mdns_sd::{ServiceDaemon, ServiceEvent};

/// An advertised authorization server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advertised {
    /// Where to read its metadata: by host name for https (the certificate names it), by the
    /// advertised address otherwise (no name resolution needed).
    pub issuer: String,
    /// The issuers its metadata may name: the advertised host name's and each address's.
    pub acceptable: Vec<String>,
    /// TXT `pri`: lower is preferred.
    pub priority: u32,
}

/// The issuer URL a `_nmos-auth._tcp` advertisement makes: `api_proto://host:port/api_selector`.
pub fn issuer_from_txt(host: &str, port: u16, proto: &str, selector: &str) -> String {
    let host = host.trim_end_matches('.');
    let host = if host.contains(':') { format!("[{host}]") } else { host.to_owned() };
    let selector = selector.trim_matches('/');
    if selector.is_empty() { format!("{proto}://{host}:{port}") } else { format!("{proto}://{host}:{port}/{selector}") }
}

/// Orders servers as IS-10 says: the highest priority (lowest `pri`) first, in random order
/// among equals (so that Nodes spread over them), then the others.
pub fn order(mut servers: Vec<Advertised>, seed: u64) -> Vec<Advertised> {
    let mut state = seed | 1;
    let mut next = || {
        // xorshift: enough to shuffle a handful of servers.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut keyed: Vec<(u32, u64, Advertised)> = servers.drain(..).map(|s| (s.priority, next(), s)).collect();
    keyed.sort_by_key(|(p, r, _)| (*p, *r));
    keyed.into_iter().map(|(_, _, s)| s).collect()
}

/// Browses mDNS for `within` and returns the servers found, in the order to try them.
pub async fn servers(within: Duration) -> Vec<Advertised> {
    let found = tokio::task::spawn_blocking(move || browse(within)).await.unwrap_or_default();
    let mut seed = [0u8; 8];
    let _ = aws_lc_rs::rand::fill(&mut seed);
    let seed = u64::from_le_bytes(seed);
    order(found, seed)
}

fn browse(within: Duration) -> Vec<Advertised> {
    let Ok(daemon) = ServiceDaemon::new() else { return Vec::new() };
    let Ok(events) = daemon.browse("_nmos-auth._tcp.local.") else { return Vec::new() };
    let deadline = std::time::Instant::now() + within;
    let mut found = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match events.recv_timeout(left) {
            Ok(ServiceEvent::ServiceResolved(info)) => {
                let txt = |key: &str| info.get_property_val_str(key).unwrap_or_default().to_owned();
                // IS-10: only servers of this API version; addresses as advertised.
                if txt("api_ver").split(',').any(|v| v == "v1.0") {
                    let proto = match txt("api_proto").as_str() {
                        "https" => "https",
                        _ => "http",
                    };
                    let (port, selector) = (info.get_port(), txt("api_selector"));
                    let hostname = info.get_hostname().trim_end_matches('.').to_owned();
                    let address = info.get_addresses().iter().next().map(|a| a.to_string());
                    let mut acceptable = vec![issuer_from_txt(&hostname, port, proto, &selector)];
                    acceptable.extend(
                        info.get_addresses().iter().map(|a| issuer_from_txt(&a.to_string(), port, proto, &selector)),
                    );
                    let fetch_host = match (proto, address) {
                        ("http", Some(address)) => address,
                        _ => hostname,
                    };
                    found.push(Advertised {
                        issuer: issuer_from_txt(&fetch_host, port, proto, &selector),
                        acceptable,
                        priority: txt("pri").parse().unwrap_or(u32::MAX),
                    });
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let _ = daemon.shutdown();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highest_priority_first_and_random_among_equals() {
        let s = |issuer: &str, priority| Advertised { issuer: issuer.into(), acceptable: Vec::new(), priority };
        let servers = vec![s("c", 100), s("a", 0), s("b", 0), s("d", 10)];
        let mut firsts = std::collections::BTreeSet::new();
        for seed in 1..50 {
            let ordered = order(servers.clone(), seed);
            assert!(ordered[0].priority == 0 && ordered[1].priority == 0);
            assert_eq!((ordered[2].issuer.as_str(), ordered[3].issuer.as_str()), ("d", "c"));
            firsts.insert(ordered[0].issuer.clone());
        }
        assert_eq!(firsts.len(), 2, "either of the equals may come first");
        assert_eq!(
            issuer_from_txt("10.0.0.1", 443, "https", "x-nmos/auth/v1.0"),
            "https://10.0.0.1:443/x-nmos/auth/v1.0"
        );
    }
}
