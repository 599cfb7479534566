//! Unicast DNS-SD lookups (RFC 6763 over RFC 1035), for the advertisement IS-10 prefers: PTR,
//! SRV, TXT, A and AAAA queries over TCP (RFC 7766: every DNS server answers over TCP, and TXT
//! records need no truncation handling), names decompressed, replies read without trusting them.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub(crate) const PTR: u16 = 12;
pub(crate) const SRV: u16 = 33;
pub(crate) const TXT: u16 = 16;
pub(crate) const A: u16 = 1;
pub(crate) const AAAA: u16 = 28;
const TIMEOUT: Duration = Duration::from_secs(5);

/// One answer's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Data {
    Ptr(String),
    Srv { port: u16, target: String },
    Txt(Vec<String>),
    Address(IpAddr),
}

/// The first `nameserver` of /etc/resolv.conf, port 53: the system's resolver.
pub(crate) fn system_server() -> Option<SocketAddr> {
    let conf = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    conf.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .find_map(|a| a.trim().parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
}

/// A name in wire form (no escapes: `\` in a label is taken as it is).
fn write_name(name: &str, out: &mut Vec<u8>) -> Result<(), String> {
    for label in name.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
        let len =
            u8::try_from(label.len()).ok().filter(|&l| l <= 63).ok_or(format!("{name:?}: a label is too long"))?;
        out.push(len);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    Ok(())
}

/// Asks `server` for the `rtype` records of `name`; NXDOMAIN and an empty answer are both `[]`.
pub(crate) async fn query(server: SocketAddr, name: &str, rtype: u16) -> Result<Vec<Data>, String> {
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
    parse(&reply, id, rtype).map_err(|e| format!("DNS server {server}, {name} {}: {e}", type_name(rtype)))
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

/// The name at `pos` and where it ends in place; pointers may only point backwards.
fn name_at(buf: &[u8], mut pos: usize) -> Result<(String, usize), String> {
    let mut labels: Vec<String> = Vec::new();
    let mut end = None;
    loop {
        let len = *buf.get(pos).ok_or("a truncated name")?;
        match len {
            0 => {
                let name = if labels.is_empty() { ".".to_owned() } else { format!("{}.", labels.join(".")) };
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
                labels.push(String::from_utf8_lossy(label).into_owned());
                if labels.len() > 127 {
                    return Err("a name with too many labels".into());
                }
                pos += 1 + usize::from(l);
            }
            _ => return Err("an unsupported label type".into()),
        }
    }
}

fn parse(reply: &[u8], id: u16, rtype: u16) -> Result<Vec<Data>, String> {
    let mut r = Reader { buf: reply, pos: 0 };
    if r.u16()? != id {
        return Err("a reply to another query".into());
    }
    let flags = r.u16()?;
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
        // point back into the question.
        let mut reply = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        write_name("_nmos-auth._tcp.plant.example", &mut reply).unwrap();
        reply.extend_from_slice(&[0, 12, 0, 1]);
        reply.extend_from_slice(&[0xC0, 12, 0, 12, 0, 1, 0, 0, 0, 60, 0, 8]);
        reply.extend_from_slice(&[5, b'A', b'u', b't', b'h', b'A', 0xC0, 12]);
        let found = parse(&reply, 0x1234, PTR).unwrap();
        assert_eq!(found, vec![Data::Ptr("AuthA._nmos-auth._tcp.plant.example.".into())]);
        // Cut anywhere, or with a pointer that loops, it is an error, not a panic.
        for cut in 0..reply.len() {
            let _ = parse(&reply[..cut], 0x1234, PTR);
        }
        let mut looping = reply.clone();
        let at = looping.len() - 2;
        looping[at + 1] = u8::try_from(at).unwrap();
        assert!(parse(&looping, 0x1234, PTR).is_err());
        assert!(parse(&reply, 0x4321, PTR).is_err(), "another query's reply");
    }
}
