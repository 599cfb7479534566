//! Unicast DNS-SD kept in place by RFC 2136 dynamic updates, signed with TSIG (RFC 8945): the
//! PTR, SRV and TXT records (and the host's A/AAAA records when the host is in the zone and its
//! addresses are configured) are replaced while the gateway answers, and the PTR, SRV and TXT
//! records are deleted when it does not. Messages go over TCP; every reply must carry a valid
//! TSIG signature over our request before its result is believed.
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use aws_lc_rs::hmac;
use base64::Engine;
use nmos_auth_core::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{Advertisement, SERVICE_TYPE};

const TYPE_A: u16 = 1;
const TYPE_SOA: u16 = 6;
const TYPE_PTR: u16 = 12;
const TYPE_TXT: u16 = 16;
const TYPE_AAAA: u16 = 28;
const TYPE_SRV: u16 = 33;
const TYPE_TSIG: u16 = 250;
const TYPE_ANY: u16 = 255;
const CLASS_IN: u16 = 1;
/// RFC 2136 §2.5.4: delete one RR from an RRset.
const CLASS_NONE: u16 = 254;
/// RFC 2136 §2.5.2: delete an RRset; also the TSIG record's class.
const CLASS_ANY: u16 = 255;
const OPCODE_UPDATE: u16 = 5;
/// RFC 8945 §10: the permitted clock difference, in seconds.
const FUDGE: u16 = 300;
const TIMEOUT: Duration = Duration::from_secs(5);

/// A domain name as its labels, without the root.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Name(Vec<Vec<u8>>);

impl Name {
    /// A host or zone name in text form (no escapes: these are plain host names).
    fn parse(text: &str) -> anyhow::Result<Name> {
        let labels: Vec<Vec<u8>> =
            text.trim_end_matches('.').split('.').filter(|l| !l.is_empty()).map(|l| l.as_bytes().to_vec()).collect();
        ensure!(!labels.is_empty(), "{text:?} is not a domain name");
        ensure!(labels.iter().all(|l| l.len() <= 63), "{text:?} has a label longer than 63 characters");
        Ok(Name(labels))
    }

    fn child(&self, label: &[u8]) -> Name {
        let mut labels = vec![label.to_vec()];
        labels.extend(self.0.iter().cloned());
        Name(labels)
    }

    fn lowercase(&self) -> Name {
        Name(self.0.iter().map(|l| l.to_ascii_lowercase()).collect())
    }

    fn ends_with(&self, zone: &Name) -> bool {
        self.0.len() >= zone.0.len() && self.lowercase().0.ends_with(&zone.lowercase().0)
    }

    /// Uncompressed wire form.
    fn write(&self, out: &mut Vec<u8>) {
        for label in &self.0 {
            out.push(label.len() as u8);
            out.extend_from_slice(label);
        }
        out.push(0);
    }

    fn wire(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out);
        out
    }
}

/// One record of the update section (RFC 2136 §2.5).
struct Record {
    name: Name,
    rtype: u16,
    class: u16,
    ttl: u32,
    rdata: Vec<u8>,
}

impl Record {
    fn write(&self, out: &mut Vec<u8>) {
        self.name.write(out);
        out.extend_from_slice(&self.rtype.to_be_bytes());
        out.extend_from_slice(&self.class.to_be_bytes());
        out.extend_from_slice(&self.ttl.to_be_bytes());
        out.extend_from_slice(&(self.rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.rdata);
    }

    /// Deletes every RRset of `rtype` (or every RRset, with `TYPE_ANY`) at `name`.
    fn delete_rrset(name: &Name, rtype: u16) -> Record {
        Record { name: name.clone(), rtype, class: CLASS_ANY, ttl: 0, rdata: Vec::new() }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Algorithm {
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

impl Algorithm {
    fn parse(name: &str) -> anyhow::Result<Algorithm> {
        match name.trim_end_matches('.').to_ascii_lowercase().as_str() {
            "hmac-sha256" => Ok(Algorithm::HmacSha256),
            "hmac-sha384" => Ok(Algorithm::HmacSha384),
            "hmac-sha512" => Ok(Algorithm::HmacSha512),
            other => bail!("dns_sd_tsig_algorithm {other:?}: use hmac-sha256, hmac-sha384 or hmac-sha512"),
        }
    }

    fn name(self) -> Name {
        let text = match self {
            Algorithm::HmacSha256 => "hmac-sha256",
            Algorithm::HmacSha384 => "hmac-sha384",
            Algorithm::HmacSha512 => "hmac-sha512",
        };
        Name(vec![text.as_bytes().to_vec()])
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            Algorithm::HmacSha256 => hmac::HMAC_SHA256,
            Algorithm::HmacSha384 => hmac::HMAC_SHA384,
            Algorithm::HmacSha512 => hmac::HMAC_SHA512,
        }
    }
}

/// A TSIG key: its name, algorithm and secret.
struct TsigKey {
    name: Name,
    algorithm: Algorithm,
    key: hmac::Key,
}

impl TsigKey {
    /// RFC 8945 §4.3.3: the TSIG variables that follow the message in the MAC input.
    fn variables(&self, time_signed: u64, fudge: u16, error: u16, other: &[u8], out: &mut Vec<u8>) {
        self.name.lowercase().write(out);
        out.extend_from_slice(&CLASS_ANY.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        self.algorithm.name().write(out);
        out.extend_from_slice(&time_signed.to_be_bytes()[2..]);
        out.extend_from_slice(&fudge.to_be_bytes());
        out.extend_from_slice(&error.to_be_bytes());
        out.extend_from_slice(&(other.len() as u16).to_be_bytes());
        out.extend_from_slice(other);
    }

    /// Appends a TSIG record to `message` (whose additional count is 0) and returns the MAC.
    fn sign(&self, message: &mut Vec<u8>, time_signed: u64) -> Vec<u8> {
        let mut input = message.clone();
        self.variables(time_signed, FUDGE, 0, &[], &mut input);
        let mac = hmac::sign(&self.key, &input).as_ref().to_vec();
        let mut rdata = self.algorithm.name().wire();
        rdata.extend_from_slice(&time_signed.to_be_bytes()[2..]);
        rdata.extend_from_slice(&FUDGE.to_be_bytes());
        rdata.extend_from_slice(&(mac.len() as u16).to_be_bytes());
        rdata.extend_from_slice(&mac);
        rdata.extend_from_slice(&message[0..2]); // the original id
        rdata.extend_from_slice(&0u16.to_be_bytes()); // error
        rdata.extend_from_slice(&0u16.to_be_bytes()); // other length
        Record { name: self.name.clone(), rtype: TYPE_TSIG, class: CLASS_ANY, ttl: 0, rdata }.write(message);
        message[10..12].copy_from_slice(&1u16.to_be_bytes());
        mac
    }
}

/// A reader over a received message that fails, never panics, on a short or malformed one.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> anyhow::Result<&[u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).context("a truncated DNS reply")?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn u16(&mut self) -> anyhow::Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u48(&mut self) -> anyhow::Result<u64> {
        let b = self.take(6)?;
        Ok(b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    }

    /// Skips a name, which may end in a compression pointer.
    fn skip_name(&mut self) -> anyhow::Result<()> {
        loop {
            let len = self.take(1)?[0];
            match len {
                0 => return Ok(()),
                l if l & 0xC0 == 0xC0 => {
                    self.take(1)?;
                    return Ok(());
                }
                l if l & 0xC0 == 0 => {
                    self.take(usize::from(l))?;
                }
                _ => bail!("a DNS reply with an unsupported label type"),
            }
        }
    }

    /// Reads an uncompressed name (TSIG algorithm names must not be compressed).
    fn name(&mut self) -> anyhow::Result<Name> {
        let mut labels = Vec::new();
        loop {
            let len = self.take(1)?[0];
            ensure!(len & 0xC0 == 0, "a compressed name where none may be");
            if len == 0 {
                return Ok(Name(labels));
            }
            labels.push(self.take(usize::from(len))?.to_vec());
        }
    }
}

fn rcode_name(rcode: u16) -> &'static str {
    match rcode {
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED (the server's policy does not allow this update)",
        9 => "NOTAUTH (the server does not accept this TSIG key for the zone, or is not authoritative)",
        10 => "NOTZONE (a record is outside the zone)",
        16 => "BADSIG (wrong TSIG secret)",
        17 => "BADKEY (unknown TSIG key or algorithm)",
        18 => "BADTIME (the clocks differ by more than 5 minutes)",
        _ => "an error",
    }
}

/// Keeps the advertisement's records in a zone with signed dynamic updates.
pub struct DnsUpdater {
    server: SocketAddr,
    zone: Name,
    key: TsigKey,
    ttl: u32,
}

impl DnsUpdater {
    /// From `dns_sd_update_server` and the `dns_sd_tsig_*` settings; `None` when not configured.
    pub fn from_config(config: &Config) -> anyhow::Result<Option<DnsUpdater>> {
        let Some(server) = config.dns_sd_update_server else { return Ok(None) };
        let zone = config.dns_sd_domain.as_deref().context("dns_sd_update_server needs dns_sd_domain")?;
        let key_name = config.dns_sd_tsig_key.as_deref().context("dns_sd_update_server needs dns_sd_tsig_key")?;
        let secret = match (&config.dns_sd_tsig_secret, &config.dns_sd_tsig_secret_file) {
            (Some(secret), _) => secret.expose().to_owned(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .with_context(|| format!("reading dns_sd_tsig_secret_file {}", path.display()))?,
            (None, None) => bail!("dns_sd_update_server needs dns_sd_tsig_secret or dns_sd_tsig_secret_file"),
        };
        let secret =
            base64::engine::general_purpose::STANDARD.decode(secret.trim()).context("the TSIG secret is not base64")?;
        ensure!(secret.len() >= 16, "the TSIG secret is shorter than 128 bits");
        let algorithm = Algorithm::parse(&config.dns_sd_tsig_algorithm)?;
        Ok(Some(DnsUpdater {
            server,
            zone: Name::parse(zone).context("dns_sd_domain")?,
            key: TsigKey { name: Name::parse(key_name)?, algorithm, key: hmac::Key::new(algorithm.hmac(), &secret) },
            ttl: config.dns_sd_ttl,
        }))
    }

    fn service(&self) -> Name {
        let mut name = self.zone.clone();
        for label in SERVICE_TYPE.rsplit('.') {
            name = name.child(label.as_bytes());
        }
        name
    }

    fn instance(&self, ad: &Advertisement) -> anyhow::Result<Name> {
        ensure!(ad.instance.len() <= 63, "the DNS-SD instance name is longer than 63 bytes");
        Ok(self.service().child(ad.instance.as_bytes()))
    }

    /// Replaces the advertisement's records in the zone.
    pub async fn publish(&self, ad: &Advertisement) -> anyhow::Result<()> {
        let instance = self.instance(ad)?;
        let host = Name::parse(&ad.host)?;
        let record = |name: &Name, rtype: u16, rdata: Vec<u8>| Record {
            name: name.clone(),
            rtype,
            class: CLASS_IN,
            ttl: self.ttl,
            rdata,
        };
        let mut srv = Vec::new();
        for value in [0u16, 0, ad.port] {
            srv.extend_from_slice(&value.to_be_bytes());
        }
        host.write(&mut srv);
        let mut txt = Vec::new();
        for (k, v) in &ad.txt {
            let entry = format!("{k}={v}");
            ensure!(entry.len() <= 255, "the TXT entry {k} is longer than 255 bytes");
            txt.push(entry.len() as u8);
            txt.extend_from_slice(entry.as_bytes());
        }
        let mut updates = vec![
            Record::delete_rrset(&instance, TYPE_ANY),
            record(&self.service(), TYPE_PTR, instance.wire()),
            record(&instance, TYPE_SRV, srv),
            record(&instance, TYPE_TXT, txt),
        ];
        // The host's addresses, when this zone holds the host and the addresses are known.
        if host.ends_with(&self.zone) && !ad.addresses.is_empty() {
            updates.push(Record::delete_rrset(&host, TYPE_A));
            updates.push(Record::delete_rrset(&host, TYPE_AAAA));
            for ip in &ad.addresses {
                updates.push(match ip {
                    IpAddr::V4(v4) => record(&host, TYPE_A, v4.octets().to_vec()),
                    IpAddr::V6(v6) => record(&host, TYPE_AAAA, v6.octets().to_vec()),
                });
            }
        }
        self.send(&updates).await
    }

    /// Deletes the advertisement's PTR, SRV and TXT records (the host's addresses stay).
    pub async fn withdraw(&self, ad: &Advertisement) -> anyhow::Result<()> {
        let instance = self.instance(ad)?;
        let updates = [
            // Only our PTR: other servers' instances share the service name.
            Record { name: self.service(), rtype: TYPE_PTR, class: CLASS_NONE, ttl: 0, rdata: instance.wire() },
            Record::delete_rrset(&instance, TYPE_ANY),
        ];
        self.send(&updates).await
    }

    /// Sends one signed UPDATE and checks the signed reply.
    async fn send(&self, updates: &[Record]) -> anyhow::Result<()> {
        let mut id = [0u8; 2];
        aws_lc_rs::rand::fill(&mut id).map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
        let mut message = Vec::with_capacity(512);
        message.extend_from_slice(&id);
        message.extend_from_slice(&(OPCODE_UPDATE << 11).to_be_bytes());
        for count in [1u16, 0, updates.len() as u16, 0] {
            message.extend_from_slice(&count.to_be_bytes());
        }
        self.zone.write(&mut message);
        message.extend_from_slice(&TYPE_SOA.to_be_bytes());
        message.extend_from_slice(&CLASS_IN.to_be_bytes());
        for update in updates {
            update.write(&mut message);
        }
        let time_signed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
        let request_mac = self.key.sign(&mut message, time_signed);

        let reply = tokio::time::timeout(TIMEOUT, self.exchange(&message))
            .await
            .with_context(|| format!("the DNS server {} did not answer within {TIMEOUT:?}", self.server))??;
        self.check_reply(&reply, id, &request_mac)
    }

    async fn exchange(&self, message: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut stream = tokio::net::TcpStream::connect(self.server)
            .await
            .with_context(|| format!("connecting to the DNS server {}", self.server))?;
        let mut framed = (message.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(message);
        stream.write_all(&framed).await?;
        let len = stream.read_u16().await.context("reading the DNS reply")?;
        let mut reply = vec![0u8; usize::from(len)];
        stream.read_exact(&mut reply).await.context("reading the DNS reply")?;
        Ok(reply)
    }

    /// Checks `reply` as the answer to the request `id` whose MAC was `request_mac`, at Unix
    /// time `now`: what a DNS server's reply goes through, for the fuzz targets.
    #[cfg(feature = "fuzzing")]
    pub fn check_reply_for_fuzzing(
        &self,
        reply: &[u8],
        id: [u8; 2],
        request_mac: &[u8],
        now: u64,
    ) -> anyhow::Result<()> {
        self.check_reply_at(reply, id, request_mac, now)
    }

    /// The reply must answer our id, be signed with our key over our request's MAC (RFC 8945
    /// §5.3) at a time within its fudge of our clock (§5.4.3), and say NOERROR.
    fn check_reply(&self, reply: &[u8], id: [u8; 2], request_mac: &[u8]) -> anyhow::Result<()> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
        self.check_reply_at(reply, id, request_mac, now)
    }

    fn check_reply_at(&self, reply: &[u8], id: [u8; 2], request_mac: &[u8], now: u64) -> anyhow::Result<()> {
        let mut r = Reader { buf: reply, pos: 0 };
        let header = r.take(12)?.to_vec();
        ensure!(header[0..2] == id, "a DNS reply to another request");
        let flags = u16::from_be_bytes([header[2], header[3]]);
        ensure!(flags & 0x8000 != 0 && (flags >> 11) & 0xF == OPCODE_UPDATE, "the DNS reply is not an UPDATE reply");
        let rcode = flags & 0xF;
        let counts: Vec<u16> = header[4..12].chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
        let server = self.server;
        if counts[3] == 0 {
            // An unsigned reply proves nothing, except that the server did not take our key.
            ensure!(rcode != 0, "the DNS server {server} sent an unsigned reply");
            bail!("the DNS server {server} refused the update: {}", rcode_name(rcode));
        }
        for _ in 0..counts[0] {
            r.skip_name()?;
            r.take(4)?;
        }
        let records = u32::from(counts[1]) + u32::from(counts[2]) + u32::from(counts[3]) - 1;
        for _ in 0..records {
            r.skip_name()?;
            r.take(8)?;
            let len = r.u16()?;
            r.take(usize::from(len))?;
        }
        let tsig_start = r.pos;
        r.skip_name()?;
        ensure!(r.u16()? == TYPE_TSIG, "the DNS reply's last record is not its TSIG signature");
        r.take(6)?;
        let rdlength = usize::from(r.u16()?);
        ensure!(r.pos + rdlength == reply.len(), "data after the DNS reply's TSIG record");
        let algorithm = r.name()?;
        let time_signed = r.u48()?;
        let fudge = r.u16()?;
        let mac_len = r.u16()?;
        let mac = r.take(usize::from(mac_len))?.to_vec();
        let original_id = r.take(2)?.to_vec();
        let error = r.u16()?;
        let other_len = r.u16()?;
        let other = r.take(usize::from(other_len))?.to_vec();
        if error != 0 {
            bail!("the DNS server {server} rejected the signature: {}", rcode_name(error));
        }
        ensure!(algorithm.lowercase() == self.key.algorithm.name(), "the DNS reply is signed with another algorithm");
        ensure!(original_id == id, "the DNS reply's signature is for another request");

        let mut input = (request_mac.len() as u16).to_be_bytes().to_vec();
        input.extend_from_slice(request_mac);
        let mut unsigned = reply[..tsig_start].to_vec();
        unsigned[10..12].copy_from_slice(&(counts[3] - 1).to_be_bytes());
        input.extend_from_slice(&unsigned);
        self.key.variables(time_signed, fudge, error, &other, &mut input);
        hmac::verify(&self.key.key, &input, &mac)
            .map_err(|_| anyhow::anyhow!("the DNS reply's TSIG signature does not verify"))?;
        // A genuine reply replayed later (or a clock far off) is not proof of this update.
        ensure!(
            now.abs_diff(time_signed) <= u64::from(fudge),
            "the DNS reply's TSIG time is {} s from this clock, beyond its fudge of {fudge} s",
            now.abs_diff(time_signed)
        );
        ensure!(rcode == 0, "the DNS server {server} refused the update: {}", rcode_name(rcode));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_zones() {
        let zone = Name::parse("Plant.Example.").unwrap();
        assert_eq!(zone.wire(), b"\x05Plant\x07Example\x00");
        assert!(Name::parse("auth.plant.example").unwrap().ends_with(&zone));
        assert!(!Name::parse("auth.other.example").unwrap().ends_with(&zone));
        assert!(Name::parse(".").is_err());
        assert!(Name::parse(&"a".repeat(64)).is_err());
    }

    /// An updater with a test key for plant.example.
    fn updater() -> DnsUpdater {
        let config = Config {
            dns_sd_update_server: Some("127.0.0.1:53".parse().unwrap()),
            dns_sd_domain: Some("plant.example".into()),
            dns_sd_tsig_key: Some("nmos-auth".into()),
            dns_sd_tsig_secret: Some(nmos_auth_core::secret::Secret::new("c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0")),
            ..Config::default()
        };
        DnsUpdater::from_config(&config).unwrap().unwrap()
    }

    #[test]
    fn replies_that_prove_nothing_are_refused() {
        let updater = updater();
        let id = [0x12, 0x34];
        // Truncated, another id, an unsigned NOERROR, and an unsigned refusal.
        assert!(updater.check_reply(&[0x12], id, b"mac").is_err());
        let mut reply = vec![0x99, 0x99, 0xA8, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        assert!(updater.check_reply(&reply, id, b"mac").unwrap_err().to_string().contains("another request"));
        reply[0..2].copy_from_slice(&id);
        assert!(updater.check_reply(&reply, id, b"mac").unwrap_err().to_string().contains("unsigned"));
        reply[3] = 9;
        assert!(updater.check_reply(&reply, id, b"mac").unwrap_err().to_string().contains("NOTAUTH"));
        // A reply whose TSIG record is cut short.
        let mut signed = reply.clone();
        signed[3] = 0;
        signed[11] = 1;
        signed.extend_from_slice(b"\x05plant\x07example\x00\x00\x06\x00\x01\x09nmos-auth\x00\x00\xfa");
        assert!(updater.check_reply(&signed, id, b"mac").is_err());
    }

    /// A NOERROR reply signed over our request's MAC at `time_signed` with `fudge`.
    fn signed_reply(updater: &DnsUpdater, id: [u8; 2], request_mac: &[u8], time_signed: u64, fudge: u16) -> Vec<u8> {
        let mut reply = vec![id[0], id[1], 0xA8, 0x00, 0, 0, 0, 0, 0, 0, 0, 0];
        let mut input = (request_mac.len() as u16).to_be_bytes().to_vec();
        input.extend_from_slice(request_mac);
        input.extend_from_slice(&reply);
        updater.key.variables(time_signed, fudge, 0, &[], &mut input);
        let mac = hmac::sign(&updater.key.key, &input).as_ref().to_vec();
        let mut rdata = updater.key.algorithm.name().wire();
        rdata.extend_from_slice(&time_signed.to_be_bytes()[2..]);
        rdata.extend_from_slice(&fudge.to_be_bytes());
        rdata.extend_from_slice(&(mac.len() as u16).to_be_bytes());
        rdata.extend_from_slice(&mac);
        rdata.extend_from_slice(&id);
        rdata.extend_from_slice(&[0, 0, 0, 0]);
        let key = &updater.key;
        Record { name: key.name.clone(), rtype: TYPE_TSIG, class: CLASS_ANY, ttl: 0, rdata }.write(&mut reply);
        reply[10..12].copy_from_slice(&1u16.to_be_bytes());
        reply
    }

    #[test]
    fn a_signed_reply_counts_only_within_its_time_window() {
        let updater = updater();
        let (id, mac, now) = ([0x12, 0x34], b"request-mac".as_slice(), 1_800_000_000);
        updater.check_reply_at(&signed_reply(&updater, id, mac, now - 30, 300), id, mac, now).unwrap();
        // The server's own fudge is what is signed and what bounds the window.
        updater.check_reply_at(&signed_reply(&updater, id, mac, now + 50, 60), id, mac, now).unwrap();
        let stale = updater.check_reply_at(&signed_reply(&updater, id, mac, now - 301, 300), id, mac, now);
        assert!(stale.unwrap_err().to_string().contains("beyond its fudge"));
        let early = updater.check_reply_at(&signed_reply(&updater, id, mac, now + 61, 60), id, mac, now);
        assert!(early.is_err());
        // Signed over another request's MAC: no proof of this one.
        let other = signed_reply(&updater, id, b"another-mac", now, 300);
        assert!(updater.check_reply_at(&other, id, mac, now).unwrap_err().to_string().contains("does not verify"));
    }
}
