//! DNS-SD discovery of `_nmos-auth._tcp` authorization servers (IS-10 §Discovery): unicast
//! (preferred), then mDNS.
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use mdns_sd::{ServiceDaemon, ServiceEvent};

use crate::dns;

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

/// How a resource server finds authorization servers by DNS-SD `_nmos-auth._tcp` (IS-10
/// §Discovery): unicast DNS-SD first, which IS-10 prefers and requires resource servers to
/// support, then mDNS when no server found by unicast answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsSd {
    /// The unicast browse domain (`plant.example`); `None` takes the system's (the first
    /// `search` domain of /etc/resolv.conf), and there being none skips unicast.
    pub domain: Option<String>,
    /// The DNS server asked; `None` takes the system's (the first `nameserver` of
    /// /etc/resolv.conf).
    pub dns_server: Option<SocketAddr>,
    /// Browse mDNS (`local.`) too, for as long as `mdns_browse`, when unicast finds no server
    /// that answers.
    pub multicast: bool,
    /// How long an mDNS browse listens.
    pub mdns_browse: Duration,
    /// Take servers advertising `api_proto=http` too: for development and test networks only.
    /// Otherwise only `api_proto=https` servers are taken (IS-10: https in production), whose
    /// certificate must name the advertised host: over plain http anyone able to advertise could
    /// sign tokens this API would accept.
    pub plain_http: bool,
}

impl Default for DnsSd {
    /// The system's domain and DNS server, then mDNS for 3 s; https servers only.
    fn default() -> DnsSd {
        DnsSd {
            domain: None,
            dns_server: None,
            multicast: true,
            mdns_browse: Duration::from_secs(3),
            plain_http: false,
        }
    }
}

impl DnsSd {
    /// The servers advertised by unicast DNS-SD, in the order to try them: none when there is no
    /// domain or DNS server to ask; an error when the lookup fails (or takes more than 10 s).
    pub async fn unicast(&self) -> Result<Vec<Advertised>, String> {
        let Some(domain) = self.domain.clone().or_else(dns::system_domain) else { return Ok(Vec::new()) };
        let Some(server) = self.dns_server.or_else(dns::system_server) else { return Ok(Vec::new()) };
        let browsed = match tokio::time::timeout(UNICAST_LOOKUP, dns::browse(server, SERVICE, &domain)).await {
            Ok(Ok(browsed)) => browsed,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(format!("{SERVICE}.{domain}: no answer from {server} within 10 s")),
        };
        for problem in &browsed.problems {
            tracing::debug!(domain, problem, "part of a unicast DNS-SD lookup failed");
        }
        let found = browsed.instances.iter().filter_map(|i| {
            let addresses: Vec<String> = i.addresses.iter().map(IpAddr::to_string).collect();
            advertised(&i.target, i.port, &addresses, &|key| i.txt.get(key).cloned().unwrap_or_default())
        });
        Ok(self.usable(found.collect()))
    }

    /// The servers advertised by mDNS, in the order to try them (none when `multicast` is off).
    pub async fn multicast(&self) -> Vec<Advertised> {
        if !self.multicast {
            return Vec::new();
        }
        let within = self.mdns_browse;
        let found = tokio::task::spawn_blocking(move || browse(within)).await.unwrap_or_default();
        self.usable(found)
    }

    fn usable(&self, found: Vec<Advertised>) -> Vec<Advertised> {
        let mut seed = [0u8; 8];
        let _ = aws_lc_rs::rand::fill(&mut seed);
        let usable = found.into_iter().filter(|s| self.plain_http || s.issuer.starts_with("https://")).collect();
        let mut ordered = order(usable, u64::from_le_bytes(seed));
        // A network that advertises more cannot make this API hold or try more.
        ordered.truncate(MAX_SERVERS);
        ordered
    }
}

const SERVICE: &str = "_nmos-auth._tcp";
/// The longest a whole unicast lookup may take.
const UNICAST_LOOKUP: Duration = Duration::from_secs(10);
/// The most servers taken from one unicast lookup or one mDNS browse.
const MAX_SERVERS: usize = 32;

/// An advertisement of `host`:`port` (with its `addresses`) and its TXT record, as a server to
/// try; none unless it offers IS-10 v1.0.
fn advertised(host: &str, port: u16, addresses: &[String], txt: &dyn Fn(&str) -> String) -> Option<Advertised> {
    if !txt("api_ver").split(',').any(|v| v == "v1.0") {
        return None;
    }
    // A host name as a URL takes it (letters, digits and hyphens); anything else would make a
    // URL naming another host, or none.
    let hostname = host.trim_end_matches('.');
    let label = |l: &str| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !hostname.split('.').all(label) {
        return None;
    }
    let proto = match txt("api_proto").as_str() {
        "https" => "https",
        _ => "http",
    };
    let selector = txt("api_selector");
    let mut acceptable = vec![issuer_from_txt(hostname, port, proto, &selector)];
    acceptable.extend(addresses.iter().map(|a| issuer_from_txt(a, port, proto, &selector)));
    let fetch_host = match (proto, addresses.first()) {
        ("http", Some(address)) => address,
        _ => hostname,
    };
    Some(Advertised {
        issuer: issuer_from_txt(fetch_host, port, proto, &selector),
        acceptable,
        priority: txt("pri").parse().unwrap_or(u32::MAX),
    })
}

fn browse(within: Duration) -> Vec<Advertised> {
    let Ok(daemon) = ServiceDaemon::new() else { return Vec::new() };
    let Ok(events) = daemon.browse(&format!("{SERVICE}.local.")) else { return Vec::new() };
    let deadline = std::time::Instant::now() + within;
    let mut found = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match events.recv_timeout(left) {
            Ok(ServiceEvent::ServiceResolved(info)) => {
                let txt = |key: &str| info.get_property_val_str(key).unwrap_or_default().to_owned();
                let addresses: Vec<String> = info.get_addresses().iter().map(|a| a.to_string()).collect();
                found.extend(advertised(info.get_hostname(), info.get_port(), &addresses, &txt));
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

    #[test]
    fn an_advertisement_is_read_as_is_10_defines_it() {
        let txt = |proto: &'static str, ver: &'static str| {
            move |key: &str| match key {
                "api_proto" => proto.to_owned(),
                "api_ver" => ver.to_owned(),
                "api_selector" => "/x-nmos/auth/v1.0/".to_owned(),
                "pri" => "7".to_owned(),
                _ => String::new(),
            }
        };
        let addresses = ["192.0.2.10".to_owned()];
        let https = advertised("auth.plant.example.", 443, &addresses, &txt("https", "v1.0,v1.1")).unwrap();
        assert_eq!(https.issuer, "https://auth.plant.example:443/x-nmos/auth/v1.0", "https: by host name");
        assert_eq!(
            https.acceptable,
            ["https://auth.plant.example:443/x-nmos/auth/v1.0", "https://192.0.2.10:443/x-nmos/auth/v1.0"]
        );
        assert_eq!(https.priority, 7);
        let http = advertised("auth.plant.example.", 80, &addresses, &txt("http", "v1.0")).unwrap();
        assert_eq!(http.issuer, "http://192.0.2.10:80/x-nmos/auth/v1.0", "http: by address");
        for host in [".", r"evil\.example\/x.plant.example.", "a..b.", "auth@evil.example."] {
            assert_eq!(advertised(host, 443, &addresses, &txt("https", "v1.0")), None, "{host}");
        }
        assert_eq!(advertised("auth.plant.example.", 443, &addresses, &txt("https", "v1.1,v2.0")), None);
        let many = (0..40).map(|i| advertised(&format!("a{i}"), 443, &[], &txt("https", "v1.0")).unwrap());
        assert_eq!(DnsSd::default().usable(many.collect()).len(), MAX_SERVERS);
    }
}
