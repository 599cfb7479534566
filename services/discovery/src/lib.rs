//! DNS-SD advertisement of the gateway as `_nmos-auth._tcp` (IS-10 §3, is-10.md §1.15): mDNS
//! while the server runs, and the records for a unicast DNS zone, which IS-10 prefers: printed as
//! a zone fragment, or kept in the zone with RFC 2136 dynamic updates.
#![forbid(unsafe_code)]

mod dns_update;

pub use dns_update::DnsUpdater;

use std::net::IpAddr;

use anyhow::Context;
use mdns_sd::{ServiceDaemon, ServiceInfo};
use nmos_auth_core::Config;

pub const SERVICE_TYPE: &str = "_nmos-auth._tcp";

/// What is advertised: the public host, addresses and port, and the TXT records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advertisement {
    pub instance: String,
    /// Fully qualified, with the trailing dot.
    pub host: String,
    /// Empty: every address of this machine (mDNS only).
    pub addresses: Vec<IpAddr>,
    pub port: u16,
    pub txt: Vec<(String, String)>,
}

fn machine_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "nmos-auth".to_owned())
}

impl Advertisement {
    /// The public side of the gateway, as configured.
    pub fn from_config(config: &Config) -> anyhow::Result<Advertisement> {
        let public = url::Url::parse(&config.public_base()?)?;
        let port = public.port_or_known_default().context("the public URL has no port")?;
        let url_host = public.host_str().unwrap_or_default().trim_matches(['[', ']']).to_owned();
        let host = match &config.dns_sd_host {
            Some(host) => host.clone(),
            None if url_host.parse::<IpAddr>().is_err() && url_host.contains('.') => url_host.clone(),
            None => format!("{}.local", machine_name()),
        };
        let addresses = if !config.dns_sd_addresses.is_empty() {
            config.dns_sd_addresses.clone()
        } else if let Ok(ip) = url_host.parse::<IpAddr>() {
            vec![ip]
        } else {
            Vec::new()
        };
        let mut txt = vec![
            ("api_proto".to_owned(), public.scheme().to_owned()),
            ("api_ver".to_owned(), nmos_auth_core::API_VERSION.to_owned()),
            ("pri".to_owned(), config.dns_sd_priority.to_string()),
        ];
        // The issuer's path (RFC 8414 §3), without its slashes.
        txt.push(("api_selector".to_owned(), nmos_auth_core::AUTH_API_BASE.trim_matches('/').to_owned()));
        Ok(Advertisement {
            instance: config.dns_sd_instance.clone().unwrap_or_else(|| format!("nmos-auth-{}", machine_name())),
            host: format!("{}.", host.trim_end_matches('.')),
            addresses,
            port,
            txt,
        })
    }

    /// The PTR, SRV, TXT and A/AAAA records for a unicast DNS zone under `domain`.
    pub fn zone(&self, domain: &str) -> String {
        let domain = format!("{}.", domain.trim_end_matches('.'));
        let instance: String = self
            .instance
            .chars()
            .map(|c| match c {
                ' ' => "\\032".to_owned(),
                '.' => "\\.".to_owned(),
                c => c.to_string(),
            })
            .collect();
        let service = format!("{SERVICE_TYPE}.{domain}");
        let full = format!("{instance}.{service}");
        let txt: Vec<String> = self.txt.iter().map(|(k, v)| format!("\"{k}={v}\"")).collect();
        let mut zone = format!(
            "; DNS-SD for the NMOS authorization server (IS-10): add to the zone {domain}\n\
             {service} 3600 IN PTR {full}\n\
             {full} 3600 IN SRV 0 0 {port} {host}\n\
             {full} 3600 IN TXT {txt}\n",
            port = self.port,
            host = self.host,
            txt = txt.join(" "),
        );
        if self.addresses.is_empty() {
            zone.push_str(&format!("; {} needs an A record: set dns_sd_addresses\n", self.host));
        }
        for ip in &self.addresses {
            let kind = if ip.is_ipv4() { "A" } else { "AAAA" };
            zone.push_str(&format!("{} 3600 IN {kind} {ip}\n", self.host));
        }
        zone
    }
}

/// An mDNS advertisement, withdrawn (with goodbye packets) when stopped.
pub struct Advertiser {
    daemon: ServiceDaemon,
    fullname: String,
}

impl Advertiser {
    pub fn start(ad: &Advertisement) -> anyhow::Result<Advertiser> {
        let daemon = ServiceDaemon::new().context("starting mDNS")?;
        let properties: Vec<(&str, &str)> = ad.txt.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let info = ServiceInfo::new(
            &format!("{SERVICE_TYPE}.local."),
            &ad.instance,
            &ad.host,
            ad.addresses.as_slice(),
            ad.port,
            properties.as_slice(),
        )
        .context("building the mDNS advertisement")?;
        let info = if ad.addresses.is_empty() { info.enable_addr_auto() } else { info };
        let fullname = info.get_fullname().to_owned();
        daemon.register(info).context("registering the mDNS advertisement")?;
        tracing::info!(service = %fullname, host = %ad.host, port = ad.port, "advertising over mDNS");
        Ok(Advertiser { daemon, fullname })
    }

    /// Withdraws the advertisement and stops mDNS.
    pub fn stop(self) {
        if let Ok(done) = self.daemon.unregister(&self.fullname) {
            let _ = done.recv_timeout(std::time::Duration::from_secs(2));
        }
        if let Ok(done) = self.daemon.shutdown() {
            let _ = done.recv_timeout(std::time::Duration::from_secs(2));
        }
        tracing::info!(service = %self.fullname, "mDNS advertisement withdrawn");
    }
}

/// How the advertisement is made: over mDNS, in a unicast zone by dynamic update, or both.
pub struct Announcers {
    pub mdns: bool,
    pub dns: Option<DnsUpdater>,
}

impl Announcers {
    pub fn from_config(config: &Config) -> anyhow::Result<Announcers> {
        Ok(Announcers { mdns: config.mdns, dns: DnsUpdater::from_config(config)? })
    }

    pub fn any(&self) -> bool {
        self.mdns || self.dns.is_some()
    }
}

/// How often records in a unicast zone are written again while the gateway answers (they
/// may have been lost to a zone reload), and how soon a failed update is retried.
const REFRESH: std::time::Duration = std::time::Duration::from_secs(300);
const RETRY: std::time::Duration = std::time::Duration::from_secs(10);

/// The sidecar: advertises while the gateway at `health_url` answers, withdraws the
/// advertisement while it does not, and announces it again when it is back; withdraws it when
/// `stop` completes. Runs inside `nmos-auth serve` and alone as `nmos-auth discovery`.
pub async fn sidecar(
    ad: Advertisement,
    announcers: Announcers,
    health_url: String,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    // Only liveness is read from the gateway, never data: its certificate need not be trusted
    // here (it may be issued for a public name that does not resolve from this pod).
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(1))
        .danger_accept_invalid_certs(true)
        .build()?;
    let mut advertiser: Option<Advertiser> = None;
    // In the unicast zone: whether our records are there, and when to write them next.
    let mut published = false;
    let mut next_update = tokio::time::Instant::now();
    let mut was_healthy = false;
    tokio::pin!(stop);
    loop {
        let healthy = http.get(&health_url).send().await.is_ok_and(|r| r.status().is_success());
        if healthy {
            if announcers.mdns && advertiser.is_none() {
                advertiser = Some(Advertiser::start(&ad)?);
            }
            if let Some(dns) = &announcers.dns
                && tokio::time::Instant::now() >= next_update
            {
                match dns.publish(&ad).await {
                    Ok(()) => {
                        if !published {
                            tracing::info!(service = %ad.instance, "DNS-SD records updated in the unicast zone");
                        }
                        published = true;
                        next_update = tokio::time::Instant::now() + REFRESH;
                    }
                    Err(e) => {
                        tracing::error!(error = %format!("{e:#}"), "updating the DNS-SD records in the unicast zone");
                        // The server may have applied it all the same (a lost reply): withdraw
                        // when the time comes either way (deleting is harmless if it did not).
                        published = true;
                        next_update = tokio::time::Instant::now() + RETRY;
                    }
                }
            }
        } else {
            if was_healthy {
                tracing::warn!(%health_url, "the gateway is not answering: withdrawing the advertisement");
            }
            if let Some(running) = advertiser.take() {
                tokio::task::spawn_blocking(move || running.stop()).await?;
            }
            if published && withdraw(&ad, &announcers).await {
                published = false;
                next_update = tokio::time::Instant::now();
            }
        }
        was_healthy = healthy;
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
    }
    if let Some(running) = advertiser {
        tokio::task::spawn_blocking(move || running.stop()).await?;
    }
    if published {
        withdraw(&ad, &announcers).await;
    }
    Ok(())
}

/// Deletes the records from the unicast zone; false (logged) when that failed.
async fn withdraw(ad: &Advertisement, announcers: &Announcers) -> bool {
    let Some(dns) = &announcers.dns else { return true };
    match dns.withdraw(ad).await {
        Ok(()) => {
            tracing::info!(service = %ad.instance, "DNS-SD records removed from the unicast zone");
            true
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "removing the DNS-SD records from the unicast zone");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_records_follow_is_10() {
        let config = Config {
            public_url: Some("https://auth.plant.example:443".into()),
            dns_sd_instance: Some("Auth Server".into()),
            dns_sd_addresses: vec!["192.0.2.10".parse().unwrap()],
            dns_sd_priority: 0,
            ..Config::default()
        };
        let ad = Advertisement::from_config(&config).unwrap();
        assert_eq!(ad.host, "auth.plant.example.");
        assert_eq!(ad.port, 443);
        let zone = ad.zone("plant.example");
        assert!(
            zone.contains("_nmos-auth._tcp.plant.example. 3600 IN PTR Auth\\032Server._nmos-auth._tcp.plant.example.")
        );
        assert!(zone.contains("IN SRV 0 0 443 auth.plant.example."));
        assert!(zone.contains(r#"IN TXT "api_proto=https" "api_ver=v1.0" "pri=0" "api_selector=x-nmos/auth/v1.0""#));
        assert!(zone.contains("auth.plant.example. 3600 IN A 192.0.2.10"));
    }
}
