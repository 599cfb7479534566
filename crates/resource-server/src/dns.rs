//! Unicast DNS-SD lookups (RFC 6763 over RFC 1035), which IS-10 prefers and requires resource
//! servers to support: PTR, SRV, TXT, A and AAAA queries over TCP (RFC 7766: every DNS server
//! answers over TCP, and TXT records need no truncation handling), names decompressed, replies
//! read without trusting them.
//!
//! Names are in presentation form: a `.` or `\` inside a label is escaped (`\.`, `\\`), so an
//! instance name such as `Studio 1.A` survives the round trip from a PTR answer to the SRV query.
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Record type PTR.
pub const PTR: u16 = 12;
/// Record type SRV.
pub const SRV: u16 = 33;
/// Record type TXT.
pub const TXT: u16 = 16;
/// Record type A.
pub const A: u16 = 1;
/// Record type AAAA.
pub const AAAA: u16 = 28;
const TIMEOUT: Duration = Duration::from_secs(3);
/// The most instances read from one browse.
const MAX_INSTANCES: usize = 32;
/// The most SRV records read for one instance.
const MAX_SRV_RECORDS: usize = 4;
/// The most addresses kept for one SRV target.
const MAX_ADDRESSES: usize = 8;

/// One answer's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// A PTR record's name.
    Ptr(String),
    /// An SRV record's port and target host.
    Srv {
        /// The port.
        port: u16,
        /// The host (a name, ending in `.`).
        target: String,
    },
    /// A TXT record's strings.
    Txt(Vec<String>),
    /// An A or AAAA record's address.
    Address(IpAddr),
}

/// A DNS-SD service instance found by [`browse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// The instance's name (`Auth\ A._nmos-auth._tcp.plant.example.` as presented).
    pub name: String,
    /// The SRV record's target host, ending in `.`.
    pub target: String,
    /// The SRV record's port.
    pub port: u16,
    /// The target's A and AAAA records (empty when it has none, or the lookups failed: see
    /// `problems`).
    pub addresses: Vec<IpAddr>,
    /// The TXT record's `key=value` strings, keys in lower case (RFC 6763 §6.4; the first of
    /// a repeated key).
    pub txt: BTreeMap<String, String>,
    /// The target's address lookups that failed.
    pub problems: Vec<String>,
}

/// The first `nameserver` of /etc/resolv.conf, port 53: the system's resolver.
pub fn system_server() -> Option<SocketAddr> {
    let conf = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    conf.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .find_map(|a| a.trim().parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
}

/// The system's browse domain: the first domain of the last `search` or `domain` line of
/// /etc/resolv.conf (as the resolver reads them), unless it is mDNS's `local`.
pub fn system_domain() -> Option<String> {
    domain_of_resolv_conf(&std::fs::read_to_string("/etc/resolv.conf").ok()?)
}

fn domain_of_resolv_conf(conf: &str) -> Option<String> {
    let mut domain = None;
    for line in conf.lines() {
        let mut words = line.split_whitespace();
        if let (Some("search" | "domain"), Some(first)) = (words.next(), words.next()) {
            domain = Some(first.trim_end_matches('.').to_owned());
        }
    }
    domain.filter(|d| !d.is_empty() && !d.eq_ignore_ascii_case("local"))
}

/// What [`browse`] found: the instances it could read, and what it could not read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Browsed {
    /// The instances with an SRV record (one entry per SRV record).
    pub instances: Vec<Instance>,
    /// Lookups that failed, and what was left unread past the limits; each names what it is
    /// about.
    pub problems: Vec<String>,
}

/// Reads the `_nmos-auth._tcp` (or any `service`) instances of `domain` from `server`: the PTR
/// records, then each instance's TXT, its SRV records and their targets' addresses. An instance
/// whose TXT or SRV lookup fails is left out and the failure noted; a failed address lookup is
/// noted on the instance. At most 32 instances, 4 SRV records each and 8 addresses a target
/// are read, so a DNS server cannot make the answer large; the caller bounds the time.
pub async fn browse(server: SocketAddr, service: &str, domain: &str) -> Result<Browsed, String> {
    let service = format!("{service}.{}.", domain.trim_end_matches('.'));
    let mut browsed = Browsed::default();
    let pointers = query(server, &service, PTR).await?;
    if pointers.len() > MAX_INSTANCES {
        browsed.problems.push(format!("{service}: {} instances, only the first {MAX_INSTANCES} read", pointers.len()));
    }
    for ptr in pointers.into_iter().take(MAX_INSTANCES) {
        let Data::Ptr(name) = ptr else { continue };
        let (txt_records, srv_records) = match (query(server, &name, TXT).await, query(server, &name, SRV).await) {
            (Ok(txt), Ok(srv)) => (txt, srv),
            (Err(e), _) | (_, Err(e)) => {
                browsed.problems.push(e);
                continue;
            }
        };
        let mut txt = BTreeMap::new();
        for record in txt_records {
            let Data::Txt(strings) = record else { continue };
            for string in strings {
                let (key, value) = string.split_once('=').unwrap_or((&string, ""));
                txt.entry(key.to_ascii_lowercase()).or_insert_with(|| value.to_owned());
            }
        }
        for srv in srv_records.into_iter().take(MAX_SRV_RECORDS) {
            let Data::Srv { port, target } = srv else { continue };
            let (mut addresses, mut problems) = (Vec::new(), Vec::new());
            for rtype in [A, AAAA] {
                match query(server, &target, rtype).await {
                    Ok(records) => addresses.extend(records.into_iter().filter_map(|r| match r {
                        Data::Address(ip) => Some(ip),
                        _ => None,
                    })),
                    Err(e) => problems.push(e),
                }
            }
            addresses.truncate(MAX_ADDRESSES);
            browsed.instances.push(Instance {
                name: name.clone(),
                target,
                port,
                addresses,
                txt: txt.clone(),
                problems,
            });
        }
    }
    Ok(browsed)
}

/// A name in wire form, from its presentation form (`\.`, `\\` and `\DDD` escapes).
fn write_name(name: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let mut label = Vec::new();
    let mut bytes = name.bytes().peekable();
    let end_label = |label: &mut Vec<u8>, out: &mut Vec<u8>| {
        let len = u8::try_from(label.len())
            .ok()
            .filter(|&l| l <= 63)
            .ok_or_else(|| format!("{name:?}: a label is too long"))?;
        if len > 0 {
            out.push(len);
            out.append(label);
        }
        Ok::<_, String>(())
    };
    while let Some(b) = bytes.next() {
        match b {
            b'.' => end_label(&mut label, out)?,
            b'\\' => {
                let digits: Vec<u8> = std::iter::from_fn(|| bytes.next_if(u8::is_ascii_digit)).take(3).collect();
                match digits.len() {
                    0 => label.push(bytes.next().ok_or_else(|| format!("{name:?}: a trailing \\"))?),
                    3 => {
                        let value = digits.iter().fold(0u16, |v, d| v * 10 + u16::from(d - b'0'));
                        label.push(u8::try_from(value).map_err(|_| format!("{name:?}: \\{value} is not a byte"))?);
                    }
                    _ => return Err(format!("{name:?}: a \\ escape needs three digits")),
                }
            }
            _ => label.push(b),
        }
    }
    end_label(&mut label, out)?;
    out.push(0);
    Ok(())
}

/// Asks `server` for the `rtype` records of `name`; NXDOMAIN and an empty answer are both `[]`.
pub async fn query(server: SocketAddr, name: &str, rtype: u16) -> Result<Vec<Data>, String> {
    let id: u16 = rand_id();
    let mut message = Vec::with_capacity(64);
    message.extend_from_slice(&id.to_be_bytes());
    message.extend_from_slice(&0x0100u16.to_be_bytes()); // a query, recursion desired
    message.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // one question
    write_name(name, &mut message)?;
    message.extend_from_slice(&rtype.to_be_bytes());
    message.extend_from_slice(&1u16.to_be_bytes()); // IN
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(server).await?;
        let mut framed = (message.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&message);
        stream.write_all(&framed).await?;
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await?;
        let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut reply).await?;
        Ok::<_, std::io::Error>(reply)
    };
    let reply = match tokio::time::timeout(TIMEOUT, exchange).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(e)) => return Err(format!("DNS server {server}: {e}")),
        Err(_) => return Err(format!("DNS server {server}: no answer within {} s", TIMEOUT.as_secs())),
    };
    read_reply(&reply, id, rtype).map_err(|e| format!("DNS server {server}, {name} {}: {e}", type_name(rtype)))
}

fn type_name(rtype: u16) -> &'static str {
    match rtype {
        PTR => "PTR",
        SRV => "SRV",
        TXT => "TXT",
        A => "A",
        AAAA => "AAAA",
        _ => "?",
    }
}

fn rand_id() -> u16 {
    let mut b = [0u8; 2];
    let _ = aws_lc_rs::rand::fill(&mut b);
    u16::from_be_bytes(b)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or("a truncated reply")?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A name at the current position, following compression pointers (RFC 1035 §4.1.4).
    fn name(&mut self) -> Result<String, String> {
        let (name, end) = name_at(self.buf, self.pos)?;
        self.pos = end;
        Ok(name)
    }
}

/// The name at `pos`, in presentation form, and where it ends in place; pointers may only
/// point backwards.
fn name_at(buf: &[u8], mut pos: usize) -> Result<(String, usize), String> {
    let mut name = String::new();
    let mut labels = 0;
    let mut end = None;
    loop {
        let len = *buf.get(pos).ok_or("a truncated name")?;
        match len {
            0 => {
                if name.is_empty() {
                    name.push('.');
                }
                return Ok((name, end.unwrap_or(pos + 1)));
            }
            l if l & 0xC0 == 0xC0 => {
                let low = *buf.get(pos + 1).ok_or("a truncated name")?;
                let target = (usize::from(l & 0x3F) << 8) | usize::from(low);
                if target >= pos {
                    return Err("a compression pointer that does not point back".into());
                }
                end.get_or_insert(pos + 2);
                pos = target;
            }
            l if l & 0xC0 == 0 => {
                let label = buf.get(pos + 1..pos + 1 + usize::from(l)).ok_or("a truncated name")?;
                for c in String::from_utf8_lossy(label).chars() {
                    if matches!(c, '.' | '\\') {
                        name.push('\\');
                    }
                    name.push(c);
                }
                name.push('.');
                labels += 1;
                if labels > 127 {
                    return Err("a name with too many labels".into());
                }
                pos += 1 + usize::from(l);
            }
            _ => return Err("an unsupported label type".into()),
        }
    }
}

/// The `rtype` answers of `reply`, a reply to the query `id`; any other reply, a server error,
/// or a malformed record is an error (never a panic: this reads what the network sent).
pub fn read_reply(reply: &[u8], id: u16, rtype: u16) -> Result<Vec<Data>, String> {
    let mut r = Reader { buf: reply, pos: 0 };
    if r.u16()? != id {
        return Err("a reply to another query".into());
    }
    let flags = r.u16()?;
    if flags & 0x8000 == 0 {
        return Err("a query, not a reply".into());
    }
    match flags & 0x000F {
        0 | 3 => {} // NOERROR, NXDOMAIN
        rcode => return Err(format!("the server answered with rcode {rcode}")),
    }
    let (questions, answers) = (r.u16()?, r.u16()?);
    r.take(4)?; // authority and additional counts
    for _ in 0..questions {
        r.name()?;
        r.take(4)?;
    }
    let mut found = Vec::new();
    for _ in 0..answers {
        r.name()?;
        let (kind, _class) = (r.u16()?, r.u16()?);
        r.take(4)?; // TTL
        let len = usize::from(r.u16()?);
        let start = r.pos;
        let rdata = r.take(len)?;
        let data = match kind {
            _ if kind != rtype => None,
            PTR => Some(Data::Ptr(name_at(reply, start)?.0)),
            SRV if len >= 7 => {
                Some(Data::Srv { port: u16::from_be_bytes([rdata[4], rdata[5]]), target: name_at(reply, start + 6)?.0 })
            }
            TXT => {
                let mut strings = Vec::new();
                let mut t = Reader { buf: rdata, pos: 0 };
                while t.pos < rdata.len() {
                    let n = usize::from(t.take(1)?[0]);
                    strings.push(String::from_utf8_lossy(t.take(n)?).into_owned());
                }
                Some(Data::Txt(strings))
            }
            A if len == 4 => Some(Data::Address(IpAddr::V4(Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3])))),
            AAAA if len == 16 => {
                let octets: [u8; 16] = rdata.try_into().map_err(|_| "a short AAAA record")?;
                Some(Data::Address(IpAddr::V6(Ipv6Addr::from(octets))))
            }
            _ => return Err(format!("a malformed {} record", type_name(kind))),
        };
        found.extend(data);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_read_with_compression_and_never_trusted() {
        // A reply to "_nmos-auth._tcp.plant.example. PTR" whose answer's name and data both
        // point back into the question; the instance's label holds a dot.
        let mut reply = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        write_name("_nmos-auth._tcp.plant.example", &mut reply).unwrap();
        reply.extend_from_slice(&[0, 12, 0, 1]);
        reply.extend_from_slice(&[0xC0, 12, 0, 12, 0, 1, 0, 0, 0, 60, 0, 9]);
        reply.extend_from_slice(&[6, b'A', b'u', b't', b'h', b'.', b'A', 0xC0, 12]);
        let found = read_reply(&reply, 0x1234, PTR).unwrap();
        assert_eq!(found, vec![Data::Ptr(r"Auth\.A._nmos-auth._tcp.plant.example.".into())]);
        // Cut anywhere, or with a pointer that loops, it is an error, not a panic.
        for cut in 0..reply.len() {
            let _ = read_reply(&reply[..cut], 0x1234, PTR);
        }
        let mut looping = reply.clone();
        let at = looping.len() - 2;
        looping[at + 1] = u8::try_from(at).unwrap();
        assert!(read_reply(&looping, 0x1234, PTR).is_err());
        assert!(read_reply(&reply, 0x4321, PTR).is_err(), "another query's reply");
        let mut query = reply.clone();
        query[2] &= 0x7F;
        assert!(read_reply(&query, 0x1234, PTR).is_err(), "a query is not a reply");
    }

    #[test]
    fn names_round_trip_with_escapes() {
        let mut wire = Vec::new();
        write_name(r"Auth\.A\032B\\C._nmos-auth._tcp.plant.example.", &mut wire).unwrap();
        assert_eq!(&wire[..11], b"\x0aAuth.A B\\C");
        assert_eq!(name_at(&wire, 0).unwrap().0, r"Auth\.A B\\C._nmos-auth._tcp.plant.example.");
        let mut root = Vec::new();
        write_name(".", &mut root).unwrap();
        assert_eq!(root, [0]);
        for bad in [r"a\", r"a\25", r"a\256", &"x".repeat(64)] {
            assert!(write_name(bad, &mut Vec::new()).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_browse_domain_is_the_resolvers() {
        assert_eq!(
            domain_of_resolv_conf("nameserver 10.0.0.1\nsearch plant.example other.example\n").as_deref(),
            Some("plant.example")
        );
        assert_eq!(domain_of_resolv_conf("domain a.example\nsearch b.example.\n").as_deref(), Some("b.example"));
        assert_eq!(domain_of_resolv_conf("search local\n"), None);
        assert_eq!(domain_of_resolv_conf("nameserver 10.0.0.1\n"), None);
    }
}
