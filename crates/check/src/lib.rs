//! `nmos-auth check URL`: holds any authorization server to IS-10 v1.0 (and the RFCs it builds
//! on), from the outside, over HTTP, as an NMOS Node or Controller would meet it. One outcome per
//! check: PASS, FAIL, WARN or SKIP, the clause it checks, and on failure what was sent and what
//! came back. The JSON-schema rules are written here as checks of our own, each naming the IS-10
//! schema file and field it comes from.
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use nmos_auth_resource_server::dns;
use serde_json::{Value, json};

mod code_flow;
pub use code_flow::Person;

/// What to check and with what.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The server's base URL, its issuer, or its metadata URL.
    pub url: String,
    /// Unlocks registration where the server requires one (RFC 7591 §3).
    pub initial_access_token: Option<String>,
    /// An existing client_credentials client (id, secret) for the token checks, when the
    /// checker cannot register one.
    pub client: Option<(String, String)>,
    /// PEM certificates to trust besides the system's (a plant's own CA).
    pub ca_pem: Option<Vec<u8>>,
    /// Browse mDNS for this long for the server's `_nmos-auth._tcp` advertisement (it goes out
    /// on the networks of the machine the checker runs on, so it is asked for, never implied).
    pub mdns: Option<Duration>,
    /// A person who signs in and approves, for the checks that need an authorization code
    /// (its exchange, PKCE's verifier, single use, refresh-token rotation).
    pub person: Option<Person>,
    /// Look up the server's unicast DNS-SD advertisement in this domain (IS-10 prefers unicast
    /// DNS-SD), asking `dns_server` (default: the system's resolver).
    pub dns_sd_domain: Option<String>,
    pub dns_server: Option<std::net::SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Pass,
    Fail,
    Warn,
    Skip,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Warn => "WARN",
            Verdict::Skip => "SKIP",
        })
    }
}

/// One check's outcome.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    /// Stable name, `area.what` (`jwks.rs512`).
    pub id: &'static str,
    /// The clause checked: IS-10 section or schema field, RFC number and section, BCP-003-02.
    pub clause: &'static str,
    pub verdict: Verdict,
    /// What was found; on failure, what was sent and what came back.
    pub detail: String,
}

/// Every outcome of one run against one server.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub target: String,
    pub outcomes: Vec<Outcome>,
}

impl Report {
    /// Whether any check failed: the command's exit status.
    pub fn failed(&self) -> bool {
        self.outcomes.iter().any(|o| o.verdict == Verdict::Fail)
    }

    pub fn verdict(&self, id: &str) -> Option<Verdict> {
        self.outcomes.iter().find(|o| o.id == id).map(|o| o.verdict)
    }

    fn count(&self, verdict: Verdict) -> usize {
        self.outcomes.iter().filter(|o| o.verdict == verdict).count()
    }

    /// For people: one line per check.
    pub fn table(&self) -> String {
        let width = self.outcomes.iter().map(|o| o.id.len()).max().unwrap_or(0);
        let clause = self.outcomes.iter().map(|o| o.clause.len()).max().unwrap_or(0);
        let mut out = format!("nmos-auth check {}\n", self.target);
        for o in &self.outcomes {
            let detail = o.detail.replace('\n', "\n      ");
            let _ = writeln!(out, "{}  {:width$}  {:clause$}  {detail}", o.verdict, o.id, o.clause);
        }
        let _ = writeln!(
            out,
            "{} passed, {} failed, {} warnings, {} skipped",
            self.count(Verdict::Pass),
            self.count(Verdict::Fail),
            self.count(Verdict::Warn),
            self.count(Verdict::Skip)
        );
        out
    }

    /// For CI systems.
    pub fn json(&self) -> Value {
        json!({
            "target": self.target,
            "summary": {
                "pass": self.count(Verdict::Pass), "fail": self.count(Verdict::Fail),
                "warn": self.count(Verdict::Warn), "skip": self.count(Verdict::Skip),
            },
            "checks": self.outcomes,
        })
    }

    /// JUnit XML, one test case per check (a WARN passes, with its detail as output).
    pub fn junit(&self) -> String {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            out,
            "<testsuite name=\"nmos-auth check {}\" tests=\"{}\" failures=\"{}\" skipped=\"{}\">",
            xml(&self.target),
            self.outcomes.len(),
            self.count(Verdict::Fail),
            self.count(Verdict::Skip)
        );
        for o in &self.outcomes {
            let (area, _) = o.id.split_once('.').unwrap_or((o.id, ""));
            let _ =
                write!(out, "  <testcase classname=\"is10.{}\" name=\"{} ({})\">", xml(area), xml(o.id), xml(o.clause));
            match o.verdict {
                Verdict::Pass => {}
                Verdict::Fail => {
                    let _ = write!(out, "<failure message=\"{}\">{}</failure>", xml(o.clause), xml(&o.detail));
                }
                Verdict::Skip => {
                    let _ = write!(out, "<skipped message=\"{}\"/>", xml(&o.detail));
                }
                Verdict::Warn => {
                    let _ = write!(out, "<system-out>WARN: {}</system-out>", xml(&o.detail));
                }
            }
            out.push_str("</testcase>\n");
        }
        out.push_str("</testsuite>\n");
        out
    }
}

fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// One HTTP exchange, kept to show on failure.
struct Exchange {
    sent: String,
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Exchange {
    fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }

    /// The OAuth `error` code of a JSON error body (RFC 6749 §5.2, RFC 7591 §3.2.2), or "".
    fn error(&self) -> String {
        self.json().and_then(|v| v["error"].as_str().map(str::to_owned)).unwrap_or_default()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn is_json(&self) -> bool {
        self.header("content-type").is_some_and(|t| t.trim_start().starts_with("application/json"))
    }

    /// What was sent and what came back, for a failure's detail.
    fn show(&self) -> String {
        let mut body: String = self.body.chars().take(400).collect();
        if body.len() < self.body.len() {
            body.push_str(" ...");
        }
        format!("sent: {}\ngot: {} {}", self.sent, self.status, body)
    }
}

struct Checker {
    http: reqwest::Client,
    outcomes: Vec<Outcome>,
}

type Checked = Result<String, String>;

impl Checker {
    fn record(&mut self, id: &'static str, clause: &'static str, verdict: Verdict, detail: impl Into<String>) {
        self.outcomes.push(Outcome { id, clause, verdict, detail: detail.into() });
    }

    fn check(&mut self, id: &'static str, clause: &'static str, result: Checked) {
        match result {
            Ok(detail) => self.record(id, clause, Verdict::Pass, detail),
            Err(detail) => self.record(id, clause, Verdict::Fail, detail),
        }
    }

    fn skip(&mut self, id: &'static str, clause: &'static str, why: impl Into<String>) {
        self.record(id, clause, Verdict::Skip, why);
    }

    async fn send(&self, request: reqwest::RequestBuilder, sent: String) -> Result<Exchange, String> {
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let headers = response.headers().clone();
                let body = response.text().await.unwrap_or_default();
                Ok(Exchange { sent, status, headers, body })
            }
            Err(e) => Err(format!("sent: {sent}\ngot: no answer: {}", error_chain(&e))),
        }
    }

    async fn get(&self, url: &str) -> Result<Exchange, String> {
        self.send(self.http.get(url), format!("GET {url}")).await
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let _ = write!(text, ": {e}");
        cause = e.source();
    }
    text
}

/// Where the metadata lives: the authority (scheme://host:port) and the API selector (the
/// issuer's path, `x-nmos/auth/v1.0`), when the URL names them.
fn locate(url: &str) -> Result<(String, Option<String>), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!("{url:?} is not an http(s) URL with a host"));
    }
    let authority = parsed.origin().ascii_serialization();
    let path = parsed.path().trim_matches('/');
    let path = path.strip_prefix(".well-known/oauth-authorization-server").unwrap_or(path).trim_matches('/');
    Ok((authority, (!path.is_empty()).then(|| path.to_owned())))
}

const WELL_KNOWN: &str = "/.well-known/oauth-authorization-server";

/// The fields IS-10's `auth_metadata.json` requires.
pub const REQUIRED_METADATA: [&str; 7] = [
    "issuer",
    "authorization_endpoint",
    "token_endpoint",
    "jwks_uri",
    "registration_endpoint",
    "response_types_supported",
    "code_challenge_methods_supported",
];

/// Runs every check it can against the server at `options.url`.
pub async fn run(options: &Options) -> Report {
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy();
    if let Some(pem) = &options.ca_pem {
        match reqwest::Certificate::from_pem_bundle(pem) {
            Ok(certificates) => {
                for certificate in certificates {
                    builder = builder.add_root_certificate(certificate);
                }
            }
            Err(e) => {
                let outcome = Outcome {
                    id: "tls.ca",
                    clause: "IS-10 §Security (TLS)",
                    verdict: Verdict::Fail,
                    detail: format!("the CA file is not PEM: {e}"),
                };
                return Report { target: options.url.clone(), outcomes: vec![outcome] };
            }
        }
    }
    let http = match builder.build() {
        Ok(http) => http,
        Err(e) => {
            let outcome = Outcome { id: "setup", clause: "-", verdict: Verdict::Fail, detail: error_chain(&e) };
            return Report { target: options.url.clone(), outcomes: vec![outcome] };
        }
    };
    let mut checker = Checker { http, outcomes: Vec::new() };
    run_checks(&mut checker, options).await;
    Report { target: options.url.clone(), outcomes: checker.outcomes }
}

async fn run_checks(c: &mut Checker, options: &Options) {
    let (authority, selector) = match locate(&options.url) {
        Ok(found) => found,
        Err(e) => return c.check("discovery.url", "RFC 8414 §3", Err(e)),
    };

    // Discovery: the bare well-known path (what nmos-cpp fetches for an unknown `iss`) and the
    // path with the API selector (RFC 8414 §3.1 path insertion).
    let bare_url = format!("{authority}{WELL_KNOWN}");
    let bare = match c.get(&bare_url).await {
        Ok(e) if e.status == 200 && e.is_json() && e.json().is_some_and(|v| v.is_object()) => Some(e),
        Ok(e) => {
            c.check(
                "discovery.well_known",
                "RFC 8414 §3; IS-10 §Discovery",
                Err(format!("not 200 JSON\n{}", e.show())),
            );
            None
        }
        Err(e) => {
            c.check("discovery.well_known", "RFC 8414 §3; IS-10 §Discovery", Err(e));
            None
        }
    };
    if bare.is_some() {
        c.check(
            "discovery.well_known",
            "RFC 8414 §3; IS-10 §Discovery",
            Ok(format!("200 application/json at {bare_url}")),
        );
    }
    let bare_json = bare.as_ref().and_then(Exchange::json);
    let selector = selector.or_else(|| {
        let issuer = bare_json.as_ref()?.get("issuer")?.as_str()?;
        let path = url::Url::parse(issuer).ok()?.path().trim_matches('/').to_owned();
        (!path.is_empty()).then_some(path)
    });
    let mut metadata = bare_json.clone();
    let mut metadata_url = bare_url.clone();
    match &selector {
        None => c.skip("discovery.selector", "RFC 8414 §3.1; IS-10 §Discovery", "the issuer has no path: no selector"),
        Some(selector) => {
            let url = format!("{authority}{WELL_KNOWN}/{selector}");
            let result = match c.get(&url).await {
                Ok(e) if e.status == 200 && e.is_json() => match (e.json(), &bare_json) {
                    (Some(v), Some(b)) if &v == b => {
                        metadata = Some(v);
                        Ok(format!("200 at {url}, identical to {WELL_KNOWN}"))
                    }
                    (Some(v), Some(_)) => {
                        metadata = Some(v);
                        Err(format!("differs from the document at {bare_url}\n{}", e.show()))
                    }
                    (Some(v), None) => {
                        metadata = Some(v);
                        Ok(format!("200 at {url}"))
                    }
                    (None, _) => Err(format!("not a JSON object\n{}", e.show())),
                },
                Ok(e) => Err(format!("not 200 application/json\n{}", e.show())),
                Err(e) => Err(e),
            };
            metadata_url = url;
            c.check("discovery.selector", "RFC 8414 §3.1; IS-10 §Discovery", result);
        }
    }
    let Some(metadata) = metadata else {
        c.skip("discovery.required", "auth_metadata.json required", "no metadata");
        return;
    };
    check_metadata(c, &metadata, &authority, selector.as_deref(), &metadata_url);

    // TLS.
    if authority.starts_with("http://") {
        c.record(
            "tls.https",
            "IS-10 §Security; BCP-003-01",
            Verdict::Warn,
            "plain HTTP: IS-10 requires TLS in a live plant (HTTP is for trials only)",
        );
        c.skip("tls.versions", "BCP-003-01 (TLS 1.2 required, 1.3 recommended)", "plain HTTP");
    } else {
        c.check(
            "tls.https",
            "IS-10 §Security; BCP-003-01",
            Ok("the certificate chain and name were verified (rustls, the system's roots and any --ca)".into()),
        );
        let result = tls_versions(&authority, options.ca_pem.as_deref()).await;
        c.check("tls.versions", "BCP-003-01 (TLS 1.2 required, 1.3 recommended)", result);
    }

    let endpoint = |name: &str| metadata.get(name).and_then(Value::as_str).map(str::to_owned);
    let issuer = endpoint("issuer").unwrap_or_default();
    let jwks = match endpoint("jwks_uri") {
        Some(url) => check_jwks(c, &url).await,
        None => None,
    };

    // Registration, then tokens for the client registered (or the one given).
    let mut client = options.client.clone();
    match endpoint("registration_endpoint") {
        Some(url) => {
            if let Some(registered) = check_registration(c, &url, options.initial_access_token.as_deref()).await
                && client.is_none()
            {
                client = Some(registered);
            }
        }
        None => c.skip("registration.created", "RFC 7591 §3.2.1", "no registration_endpoint"),
    }
    match (endpoint("token_endpoint"), client) {
        (Some(token_url), Some(client)) => {
            check_tokens(c, &token_url, &client, &issuer, jwks.as_ref(), endpoint("revocation_endpoint").as_deref())
                .await
        }
        _ => c.skip(
            "token.issued",
            "RFC 6749 §4.4, §5.1",
            "no client: give --initial-access-token (or --client ID:SECRET) to check tokens",
        ),
    }
    let endpoints = code_flow::Endpoints {
        issuer: &issuer,
        authorization: endpoint("authorization_endpoint"),
        token: endpoint("token_endpoint"),
        registration: endpoint("registration_endpoint"),
        iss_parameter: metadata.get("authorization_response_iss_parameter_supported") == Some(&Value::Bool(true)),
    };
    code_flow::check_code_flow(c, &endpoints, options.initial_access_token.as_deref(), options.person.as_ref()).await;
    match options.mdns {
        Some(within) => check_mdns(c, within, &authority, selector.as_deref()).await,
        None => c.skip("discovery.mdns", MDNS_CLAUSE, "not asked for (--mdns SECONDS)"),
    }
    match &options.dns_sd_domain {
        Some(domain) => {
            check_unicast(c, domain, options.dns_server, &authority, &issuer, selector.as_deref()).await;
        }
        None => c.skip("discovery.unicast_dns_sd", UNICAST_CLAUSE, "no domain given (--domain DOMAIN)"),
    }

    let mut endpoints: Vec<(&str, String, &str)> = vec![("metadata", metadata_url, "GET")];
    for (name, method) in [
        ("jwks_uri", "GET"),
        ("token_endpoint", "POST"),
        ("registration_endpoint", "POST"),
        ("revocation_endpoint", "POST"),
        ("authorization_endpoint", "GET"),
    ] {
        if let Some(url) = endpoint(name) {
            endpoints.push((name, url, method));
        }
    }
    check_cors(c, &endpoints).await;
}

/// Which TLS versions the server completes a handshake with, its certificate chain and name
/// verified each time. (TLS 1.1 and older cannot be offered by rustls, so they are not probed.)
async fn tls_versions(authority: &str, ca_pem: Option<&[u8]>) -> Checked {
    use rustls_pki_types::pem::PemObject;
    let url = url::Url::parse(authority).map_err(|e| e.to_string())?;
    let host = url.host_str().ok_or("no host")?.trim_matches(['[', ']']).to_owned();
    let port = url.port_or_known_default().unwrap_or(443);
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    for certificate in ca_pem.map(rustls_pki_types::CertificateDer::pem_slice_iter).into_iter().flatten().flatten() {
        let _ = roots.add(certificate);
    }
    let roots = std::sync::Arc::new(roots);
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let name = rustls_pki_types::ServerName::try_from(host.clone()).map_err(|e| format!("{host}: {e}"))?;
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for (label, version) in [("TLS 1.3", &rustls::version::TLS13), ("TLS 1.2", &rustls::version::TLS12)] {
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[version])
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
        let handshake = async {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            connector.connect(name.clone(), tcp).await
        };
        match tokio::time::timeout(Duration::from_secs(10), handshake).await {
            Ok(Ok(_)) => accepted.push(label),
            Ok(Err(e)) => refused.push(format!("{label}: {e}")),
            Err(_) => refused.push(format!("{label}: no handshake within 10 s")),
        }
    }
    let also = if refused.is_empty() { String::new() } else { format!("; {}", refused.join("; ")) };
    match (accepted.contains(&"TLS 1.2"), accepted.is_empty()) {
        (true, _) => Ok(format!("handshakes with {} (chain and name verified){also}", accepted.join(" and "))),
        (false, false) => Err(format!("TLS 1.2 refused, only {} accepted{also}", accepted.join(", "))),
        (false, true) => Err(refused.join("; ")),
    }
}

/// One `_nmos-auth._tcp` instance seen over mDNS.
#[derive(Debug)]
struct Seen {
    name: String,
    port: u16,
    addresses: Vec<String>,
    txt: std::collections::BTreeMap<String, String>,
    /// Lookups about it that failed (unicast: its host's addresses).
    problems: Vec<String>,
}

fn browse(within: Duration) -> Result<Vec<Seen>, String> {
    let daemon = mdns_sd::ServiceDaemon::new().map_err(|e| format!("mDNS: {e}"))?;
    let events = daemon.browse("_nmos-auth._tcp.local.").map_err(|e| format!("mDNS browse: {e}"))?;
    let deadline = std::time::Instant::now() + within;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match events.recv_timeout(left) {
            Ok(mdns_sd::ServiceEvent::ServiceResolved(info)) => {
                let txt = info.get_properties().iter().map(|p| (p.key().to_owned(), p.val_str().to_owned())).collect();
                seen.push(Seen {
                    name: info.get_fullname().to_owned(),
                    port: info.get_port(),
                    addresses: info.get_addresses().iter().map(|a| a.to_string()).collect(),
                    txt,
                    problems: Vec::new(),
                });
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let _ = daemon.shutdown();
    Ok(seen)
}

const MDNS_CLAUSE: &str = "IS-10 §Discovery (TXT api_proto, api_ver, api_selector, pri); RFC 6762, RFC 6763";
const UNICAST_CLAUSE: &str =
    "IS-10 §Discovery (unicast DNS-SD preferred; TXT api_proto, api_ver, api_selector, pri); RFC 6763";

/// The server's mDNS advertisement: an instance at its port (and address, when the URL names
/// one), with the TXT records IS-10 defines.
async fn check_mdns(c: &mut Checker, within: Duration, authority: &str, selector: Option<&str>) {
    let seen = match tokio::task::spawn_blocking(move || browse(within)).await {
        Ok(Ok(seen)) => seen,
        Ok(Err(e)) => return c.check("discovery.mdns", MDNS_CLAUSE, Err(e)),
        Err(e) => return c.check("discovery.mdns", MDNS_CLAUSE, Err(e.to_string())),
    };
    let how = format!("within {} s (mDNS reaches only this link)", within.as_secs());
    judge_advertisement(c, ("discovery.mdns", MDNS_CLAUSE), &seen, (&[authority], true), selector, &how);
}

/// The server's unicast DNS-SD advertisement in `domain`: the PTR records of `_nmos-auth._tcp`,
/// each instance's SRV (and its target's addresses) and TXT, held to IS-10 as mDNS's are. An
/// instance is the server's when its SRV names the host and port of the URL or of the issuer.
async fn check_unicast(
    c: &mut Checker,
    domain: &str,
    server: Option<std::net::SocketAddr>,
    authority: &str,
    issuer: &str,
    selector: Option<&str>,
) {
    const ID: &str = "discovery.unicast_dns_sd";
    let Some(server) = server.or_else(dns::system_server) else {
        return c.check(ID, UNICAST_CLAUSE, Err("no DNS server: none in /etc/resolv.conf; give --dns-server".into()));
    };
    let service = format!("_nmos-auth._tcp.{}.", domain.trim_end_matches('.'));
    match dns::browse(server, "_nmos-auth._tcp", domain).await {
        Ok(browsed) => {
            let seen: Vec<Seen> = browsed
                .instances
                .into_iter()
                .map(|i| {
                    let host = i.target.trim_end_matches('.').to_ascii_lowercase();
                    let addresses = std::iter::once(host).chain(i.addresses.iter().map(|a| a.to_string())).collect();
                    Seen { name: i.name, port: i.port, addresses, txt: i.txt, problems: i.problems }
                })
                .collect();
            let unread = match browsed.problems.is_empty() {
                true => String::new(),
                false => format!("; not read: {}", browsed.problems.join("; ")),
            };
            let how = format!("in {service} (asked {server}){unread}");
            judge_advertisement(c, (ID, UNICAST_CLAUSE), &seen, (&[authority, issuer], false), selector, &how);
        }
        Err(e) => c.check(ID, UNICAST_CLAUSE, Err(e)),
    }
}

/// Finds the server's instances among those `seen` (at the port, and the host or address, of one
/// of `urls`; at the port alone for a host name when `names_by_port`, as mDNS knows hosts by
/// their `.local` names only) and holds their TXT records to IS-10.
fn judge_advertisement(
    c: &mut Checker,
    (id, clause): (&'static str, &'static str),
    seen: &[Seen],
    (urls, names_by_port): (&[&str], bool),
    selector: Option<&str>,
    how: &str,
) {
    let Some(scheme) = urls.first().and_then(|u| url::Url::parse(u).ok()).map(|u| u.scheme().to_owned()) else {
        return;
    };
    let places: Vec<(String, u16)> = urls
        .iter()
        .filter_map(|u| url::Url::parse(u).ok())
        .map(|u| {
            let host = u.host_str().unwrap_or_default().trim_matches(['[', ']']).to_ascii_lowercase();
            (host, u.port_or_known_default().unwrap_or(0))
        })
        .collect();
    let mine: Vec<&Seen> = seen
        .iter()
        .filter(|s| {
            places.iter().any(|(host, port)| {
                let by_port_only = names_by_port && host.parse::<std::net::IpAddr>().is_err();
                s.port == *port && (by_port_only || s.addresses.contains(host))
            })
        })
        .collect();
    if mine.is_empty() {
        let others: Vec<String> =
            seen.iter().map(|s| format!("{} port {} at {:?}", s.name, s.port, s.addresses)).collect();
        let wanted: Vec<String> = places.iter().map(|(h, p)| format!("{h}:{p}")).collect();
        return c.check(
            id,
            clause,
            Err(format!("no _nmos-auth._tcp instance for {} {how}; seen: {others:?}", wanted.join(" or "))),
        );
    }
    let mut wrong = Vec::new();
    let mut development = Vec::new();
    for s in &mine {
        let txt = |key: &str| s.txt.get(key).map(String::as_str).unwrap_or_default();
        if txt("api_proto") != scheme {
            wrong.push(format!("{}: api_proto {:?}, the server speaks {scheme}", s.name, txt("api_proto")));
        }
        if !txt("api_ver").split(',').any(|v| v == "v1.0") {
            wrong.push(format!("{}: api_ver {:?} lacks v1.0", s.name, txt("api_ver")));
        }
        if txt("api_selector").trim_matches('/') != selector.unwrap_or_default() {
            wrong.push(format!(
                "{}: api_selector {:?}, the issuer's path is {:?}",
                s.name,
                txt("api_selector"),
                selector.unwrap_or_default()
            ));
        }
        // Unicast: the first address is the SRV target's name, the rest its A and AAAA records.
        if !names_by_port && s.addresses.len() < 2 {
            let host = s.addresses.first().map(String::as_str).unwrap_or_default();
            let failed = match s.problems.is_empty() {
                true => String::new(),
                false => format!(" (the lookups failed: {})", s.problems.join("; ")),
            };
            wrong.push(format!(
                "{}: its host {host} has no A or AAAA record{failed} (IS-10: an A record must exist)",
                s.name
            ));
        }
        match txt("pri").parse::<u32>() {
            Ok(pri) if pri >= 100 => development.push(format!("{}: pri {pri}", s.name)),
            Ok(_) => {}
            Err(_) => wrong.push(format!("{}: pri {:?} is not a number", s.name, txt("pri"))),
        }
    }
    let names: Vec<&str> = mine.iter().map(|s| s.name.as_str()).collect();
    if !wrong.is_empty() {
        c.check(id, clause, Err(wrong.join("; ")));
    } else if !development.is_empty() {
        c.record(
            id,
            clause,
            Verdict::Warn,
            format!("{} (100 and above: development only, IS-10)", development.join("; ")),
        );
    } else {
        let txt = &mine[0].txt;
        c.check(id, clause, Ok(format!("{names:?} with TXT {txt:?}")));
    }
}

fn check_metadata(c: &mut Checker, metadata: &Value, authority: &str, selector: Option<&str>, url: &str) {
    let missing: Vec<_> = REQUIRED_METADATA.iter().filter(|f| metadata.get(**f).is_none()).collect();
    c.check(
        "discovery.required",
        "auth_metadata.json required",
        if missing.is_empty() {
            Ok(format!("all of {}", REQUIRED_METADATA.join(", ")))
        } else {
            Err(format!("{url} lacks {missing:?}"))
        },
    );
    let mut wrong = Vec::new();
    for field in [
        "issuer",
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "registration_endpoint",
        "revocation_endpoint",
    ] {
        if let Some(value) = metadata.get(field) {
            match value.as_str().map(url::Url::parse) {
                Some(Ok(_)) => {}
                _ => wrong.push(format!("{field} is not an absolute URI: {value}")),
            }
        }
    }
    for field in [
        "response_types_supported",
        "code_challenge_methods_supported",
        "scopes_supported",
        "grant_types_supported",
        "token_endpoint_auth_methods_supported",
    ] {
        if let Some(value) = metadata.get(field)
            && !value.as_array().is_some_and(|a| a.iter().all(Value::is_string))
        {
            wrong.push(format!("{field} is not an array of strings: {value}"));
        }
    }
    if !metadata["response_types_supported"].as_array().is_some_and(|a| a.iter().any(|v| v == "code")) {
        wrong.push("response_types_supported lacks \"code\"".into());
    }
    c.check(
        "discovery.types",
        "auth_metadata.json properties",
        if wrong.is_empty() {
            Ok("URIs parse, lists are arrays of strings, \"code\" supported".into())
        } else {
            Err(wrong.join("; "))
        },
    );
    let expected = match selector {
        Some(selector) => format!("{authority}/{selector}"),
        None => authority.to_owned(),
    };
    let issuer = metadata["issuer"].as_str().unwrap_or_default();
    c.check(
        "discovery.issuer",
        "RFC 8414 §3.3",
        if issuer.trim_end_matches('/') == expected {
            Ok(format!("issuer {issuer}"))
        } else {
            Err(format!("issuer {issuer:?} is not the one the metadata URL names ({expected})"))
        },
    );
    if metadata.get("revocation_endpoint").is_none() {
        c.record(
            "discovery.revocation",
            "IS-10 §Revocation (SHOULD); RFC 7009",
            Verdict::Warn,
            "no revocation_endpoint",
        );
    } else {
        c.check(
            "discovery.revocation",
            "IS-10 §Revocation (SHOULD); RFC 7009",
            Ok("revocation_endpoint advertised".into()),
        );
    }
}

/// Checks the JWK Set; returns it for the token checks.
async fn check_jwks(c: &mut Checker, url: &str) -> Option<Value> {
    let first = match c.get(url).await {
        Ok(e) if e.status == 200 && e.json().is_some_and(|v| v["keys"].is_array()) => e,
        Ok(e) => {
            c.check(
                "jwks.fetch",
                "RFC 7517 §5; jwks_schema.json keys",
                Err(format!("not 200 with a keys array\n{}", e.show())),
            );
            return None;
        }
        Err(e) => {
            c.check("jwks.fetch", "RFC 7517 §5; jwks_schema.json keys", Err(e));
            return None;
        }
    };
    let jwks = first.json().unwrap_or_default();
    let keys = jwks["keys"].as_array().cloned().unwrap_or_default();
    c.check(
        "jwks.fetch",
        "RFC 7517 §5; jwks_schema.json keys",
        Ok(format!("{} key(s), no authentication asked", keys.len())),
    );

    let mut wrong = Vec::new();
    let mut usable = 0;
    for key in &keys {
        let kid = key["kid"].as_str().unwrap_or("?");
        if key["kty"] != "RSA" || !key["n"].is_string() || !key["e"].is_string() {
            wrong.push(format!("{kid}: not an RSA key with n and e"));
            continue;
        }
        if key.get("alg").is_some_and(|a| a != "RS512") {
            wrong.push(format!("{kid}: alg {} (RS512 is the IS-10 algorithm)", key["alg"]));
            continue;
        }
        if key.get("use").is_some_and(|u| u != "sig") {
            wrong.push(format!("{kid}: use {}", key["use"]));
            continue;
        }
        usable += 1;
    }
    c.check(
        "jwks.rs512",
        "IS-10 §Tokens (RS512); jwks_schema.json alg, use",
        match (usable, wrong.is_empty()) {
            (0, _) => Err(format!("no RSA key for RS512 signatures: {}", wrong.join("; "))),
            (_, true) => Ok(format!("{usable} RSA key(s) for RS512, use sig")),
            (_, false) => Err(wrong.join("; ")),
        },
    );
    let arrays: Vec<_> = keys
        .iter()
        .filter(|k| k.get("key_ops").is_some_and(|o| !o.is_string()))
        .map(|k| k["kid"].as_str().unwrap_or("?").to_owned())
        .collect();
    c.check(
        "jwks.key_ops",
        "jwks_schema.json key_ops (a string)",
        if arrays.is_empty() {
            Ok("key_ops absent or a string".into())
        } else {
            Err(format!("key_ops is not a string in {arrays:?} (RFC 7517 says array; IS-10's schema, which nmos-cpp applies, says string: omit it)"))
        },
    );
    let kids = |v: &Value| -> Vec<String> {
        let mut kids: Vec<String> =
            v["keys"].as_array().into_iter().flatten().filter_map(|k| k["kid"].as_str().map(str::to_owned)).collect();
        kids.sort();
        kids
    };
    let result = if kids(&jwks).len() != keys.len() {
        Err("a key without a kid: resource servers cannot pick it by the token's kid".into())
    } else {
        match c.get(url).await {
            Ok(e) => match e.json() {
                Some(second) if kids(&second) == kids(&jwks) => {
                    Ok(format!("kids {:?} the same on a second fetch", kids(&jwks)))
                }
                Some(second) => Err(format!("kids {:?} then {:?}", kids(&jwks), kids(&second))),
                None => Err(e.show()),
            },
            Err(e) => Err(e),
        }
    };
    c.check("jwks.kid_stable", "RFC 7517 §4.5; RFC 7515 §4.1.4", result);
    Some(jwks)
}

/// Registers a client_credentials client; returns its credentials.
async fn check_registration(c: &mut Checker, url: &str, iat: Option<&str>) -> Option<(String, String)> {
    const CLAUSE: &str = "RFC 7591 §3.2.1; register_client_response.json";
    let name = format!("nmos-auth check {}", now());
    let body = json!({
        "client_name": name,
        "grant_types": ["client_credentials"],
        "response_types": ["none"],
        "scope": "registration",
        "token_endpoint_auth_method": "client_secret_basic",
    });
    let http = c.http.clone();
    let post = |body: &Value| {
        let mut request = http.post(url).json(body);
        if let Some(iat) = iat {
            request = request.bearer_auth(iat);
        }
        request
    };
    let sent = format!("POST {url} {body}{}", if iat.is_some() { " (Bearer: the initial access token)" } else { "" });
    let exchange = match c.send(post(&body), sent).await {
        Ok(e) => e,
        Err(e) => {
            c.check("registration.created", CLAUSE, Err(e));
            return None;
        }
    };
    if iat.is_none() && matches!(exchange.status, 401 | 403) {
        c.skip(
            "registration.created",
            CLAUSE,
            "the server asks for an initial access token: give --initial-access-token",
        );
        return None;
    }
    let registered = exchange.json().unwrap_or_default();
    let mut wrong = Vec::new();
    if exchange.status != 201 {
        wrong.push(format!("status {} (201 expected)", exchange.status));
    }
    let id = registered["client_id"].as_str().unwrap_or_default().to_owned();
    let secret = registered["client_secret"].as_str().unwrap_or_default().to_owned();
    if id.len() < 20 {
        wrong.push(format!("client_id {id:?} is shorter than 20 characters (hard to guess: RFC 6749 §10.10)"));
    }
    if secret.is_empty() {
        wrong.push("no client_secret for a client_secret_basic client".into());
    }
    if registered["client_name"] != body["client_name"] {
        wrong.push(format!("client_name echoed as {}", registered["client_name"]));
    }
    if registered.get("grant_types").is_some_and(|g| g != &body["grant_types"]) {
        wrong.push(format!("grant_types echoed as {}", registered["grant_types"]));
    }
    if !registered["scope"].as_str().is_some_and(|s| s.split(' ').any(|s| s == "registration")) {
        wrong.push(format!("scope echoed as {} (a space-separated string)", registered["scope"]));
    }
    let ok = wrong.is_empty();
    c.check(
        "registration.created",
        CLAUSE,
        if ok {
            Ok(format!("201, client_id of {} characters, metadata echoed", id.len()))
        } else {
            Err(format!("{}\n{}", wrong.join("; "), exchange.show()))
        },
    );

    // Bad metadata: a redirect URI with a fragment (RFC 6749 §3.1.2).
    let bad = json!({
        "client_name": format!("{name} (bad)"),
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "redirect_uris": ["https://controller.example/callback#fragment"],
        "scope": "registration",
    });
    let sent = format!("POST {url} {bad}");
    let result = match c.send(post(&bad), sent).await {
        Ok(e) => {
            let error = e.error();
            if e.status == 400
                && e.is_json()
                && matches!(error.as_str(), "invalid_redirect_uri" | "invalid_client_metadata")
            {
                Ok(format!("400 {error}"))
            } else {
                Err(format!("400 with invalid_redirect_uri or invalid_client_metadata expected\n{}", e.show()))
            }
        }
        Err(e) => Err(e),
    };
    c.check("registration.errors", "RFC 7591 §3.2.2; register_client_error_response.json", result);

    let mut secret = secret;
    match (registered["registration_client_uri"].as_str(), registered["registration_access_token"].as_str()) {
        (Some(uri), Some(token)) => {
            let request = c.http.get(uri).bearer_auth(token);
            let result = match c.send(request, format!("GET {uri} (Bearer: the registration access token)")).await {
                Ok(e) if e.status == 200 && e.json().is_some_and(|v| v["client_id"] == registered["client_id"]) => {
                    // RFC 7592 §2.1: the server may issue a new secret on a read.
                    if let Some(new) = e.json().and_then(|v| v["client_secret"].as_str().map(str::to_owned)) {
                        secret = new;
                    }
                    Ok("200 with the client's metadata".into())
                }
                Ok(e) => Err(e.show()),
                Err(e) => Err(e),
            };
            c.check("registration.management", "RFC 7592 §2.1", result);
        }
        _ => c.skip("registration.management", "RFC 7592 §2.1", "not offered (no registration_client_uri)"),
    }
    (ok || (!id.is_empty() && !secret.is_empty())).then_some((id, secret))
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

async fn check_tokens(
    c: &mut Checker,
    token_url: &str,
    (id, secret): &(String, String),
    issuer: &str,
    jwks: Option<&Value>,
    revocation: Option<&str>,
) {
    let form = [("grant_type", "client_credentials"), ("scope", "registration")];
    let sent = format!("POST {token_url} grant_type=client_credentials&scope=registration (Basic: the client)");
    let request = c.http.post(token_url).basic_auth(form_encode(id), Some(form_encode(secret))).form(&form);
    let exchange = match c.send(request, sent).await {
        Ok(e) => e,
        Err(e) => return c.check("token.issued", "RFC 6749 §4.4, §5.1; token_response.json", Err(e)),
    };
    let answer = exchange.json().unwrap_or_default();
    let token = answer["access_token"].as_str().unwrap_or_default().to_owned();
    let issued = exchange.status == 200
        && exchange.is_json()
        && !token.is_empty()
        && answer["token_type"].as_str().is_some_and(|t| t.eq_ignore_ascii_case("bearer"))
        && answer["expires_in"].is_u64();
    c.check(
        "token.issued",
        "RFC 6749 §4.4, §5.1; token_response.json",
        if issued { Ok("200 with access_token, token_type Bearer, expires_in".into()) } else { Err(exchange.show()) },
    );
    if !issued {
        return;
    }
    let no_store = exchange.header("cache-control").is_some_and(|v| v.contains("no-store"));
    c.check(
        "token.no_store",
        "RFC 6749 §5.1 (Cache-Control: no-store)",
        if no_store {
            Ok("Cache-Control: no-store".into())
        } else {
            Err(format!("Cache-Control {:?}", exchange.header("cache-control")))
        },
    );
    check_token(c, &token, issuer, jwks);

    // A wrong secret: 401 invalid_client with WWW-Authenticate.
    let request = c.http.post(token_url).basic_auth(form_encode(id), Some("not-the-secret")).form(&form);
    let result = match c.send(request, format!("POST {token_url} (Basic: the client with a wrong secret)")).await {
        Ok(e) => {
            let error = e.error();
            if e.status == 401 && error == "invalid_client" && e.header("www-authenticate").is_some() {
                Ok(format!(
                    "401 invalid_client, WWW-Authenticate: {}",
                    e.header("www-authenticate").unwrap_or_default()
                ))
            } else {
                Err(format!("401 invalid_client with WWW-Authenticate expected\n{}", e.show()))
            }
        }
        Err(e) => Err(e),
    };
    c.check("token.bad_client", "RFC 6749 §5.2 (invalid_client, 401)", result);

    let request = c
        .http
        .post(token_url)
        .basic_auth(form_encode(id), Some(form_encode(secret)))
        .form(&[("grant_type", "urn:example:unknown")]);
    let result = match c.send(request, format!("POST {token_url} grant_type=urn:example:unknown")).await {
        Ok(e) => {
            let error = e.error();
            if e.status == 400 && e.is_json() && error == "unsupported_grant_type" {
                Ok("400 unsupported_grant_type".into())
            } else {
                Err(format!("400 unsupported_grant_type expected\n{}", e.show()))
            }
        }
        Err(e) => Err(e),
    };
    c.check("token.errors", "RFC 6749 §5.2; token_error_response.json", result);

    match revocation {
        Some(url) => {
            let mut results = Vec::new();
            for (what, value) in
                [("the access token", token.as_str()), ("an unknown token", "not-a-token-this-server-issued")]
            {
                let request =
                    c.http.post(url).basic_auth(form_encode(id), Some(form_encode(secret))).form(&[("token", value)]);
                results.push(match c.send(request, format!("POST {url} token=<{what}> (Basic: the client)")).await {
                    Ok(e) if e.status == 200 => Ok(()),
                    Ok(e) => Err(format!("{what}: 200 expected\n{}", e.show())),
                    Err(e) => Err(e),
                });
            }
            let failed: Vec<_> = results.into_iter().filter_map(Result::err).collect();
            c.check(
                "token.revocation",
                "RFC 7009 §2.2",
                if failed.is_empty() {
                    Ok("200 for its token and for an unknown one".into())
                } else {
                    Err(failed.join("\n"))
                },
            );
        }
        None => c.skip("token.revocation", "RFC 7009 §2.2", "no revocation_endpoint"),
    }
}

/// RFC 6749 §2.3.1: the client's id and secret are form-encoded before Basic authentication.
fn form_encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

fn check_token(c: &mut Checker, token: &str, issuer: &str, jwks: Option<&Value>) {
    let parts: Vec<&str> = token.split('.').collect();
    let decode = |part: &str| -> Option<Value> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
        serde_json::from_slice(&bytes).ok()
    };
    let (Some(header), Some(claims)) = (parts.first().and_then(|p| decode(p)), parts.get(1).and_then(|p| decode(p)))
    else {
        return c.check(
            "token.rs512",
            "IS-10 §Tokens; RFC 7519",
            Err(format!("not a JWS in compact form: {token:.60}...")),
        );
    };
    // The signature, by the JWKS key the header names.
    let result = (|| {
        if header["alg"] != "RS512" {
            return Err(format!("alg {} (RS512 required)", header["alg"]));
        }
        let jwks = jwks.ok_or("no JWK Set to check it against")?;
        let kid = header["kid"].as_str();
        let key = jwks["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|k| kid.is_none() || k["kid"].as_str() == kid)
            .ok_or(format!("no key {kid:?} in the JWK Set"))?;
        let (n, e) = (key["n"].as_str().unwrap_or_default(), key["e"].as_str().unwrap_or_default());
        let decoding = jsonwebtoken::DecodingKey::from_rsa_components(n, e).map_err(|e| format!("key {kid:?}: {e}"))?;
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS512);
        validation.validate_aud = false;
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<Value>(token, &decoding, &validation)
            .map_err(|e| format!("the signature does not verify with key {kid:?}: {e}"))?;
        Ok(format!("RS512, verified with JWKS key {}", kid.unwrap_or("(no kid)")))
    })();
    c.check("token.rs512", "IS-10 §Tokens (RS512); RFC 7515 §5.2", result);

    c.check(
        "token.iss",
        "RFC 8414 §2 issuer; token_schema.json iss",
        if claims["iss"] == issuer {
            Ok(format!("iss {issuer}"))
        } else {
            Err(format!("iss {} is not the metadata's issuer {issuer:?}", claims["iss"]))
        },
    );
    c.check(
        "token.sub",
        "token_schema.json sub",
        if claims["sub"].as_str().is_some_and(|s| !s.is_empty()) {
            Ok(format!("sub {}", claims["sub"]))
        } else {
            Err(format!("sub {}", claims["sub"]))
        },
    );
    let aud = match claims["aud"].as_array() {
        None => Err(format!("aud {} is not an array (IS-10 requires a JSON array)", claims["aud"])),
        Some(list) if list.is_empty() => Err("aud is an empty array".into()),
        Some(list) => {
            let bad: Vec<_> = list
                .iter()
                .filter(|a| {
                    let Some(a) = a.as_str() else { return true };
                    let host = a.split_once("://").map_or(a, |(_, rest)| rest);
                    host.is_empty() || host.contains([':', '/', '?', '#', '@'])
                })
                .collect();
            if bad.is_empty() {
                Ok(format!("aud {}", claims["aud"]))
            } else {
                Err(format!("aud entries with a port, path or query, or not strings: {bad:?}"))
            }
        }
    };
    c.check("token.aud", "IS-10 §Tokens aud; token_schema.json aud", aud);
    let lifetime = match (claims["exp"].as_u64(), claims["iat"].as_u64()) {
        (Some(exp), Some(iat)) if (30..=3600).contains(&exp.saturating_sub(iat)) => {
            Ok(format!("exp - iat = {} s", exp - iat))
        }
        (Some(exp), Some(iat)) => Err(format!("exp - iat = {} s, outside 30-3600", exp as i64 - iat as i64)),
        (Some(exp), None) if (30..=3600).contains(&exp.saturating_sub(now())) => {
            Ok(format!("no iat; expires in {} s", exp - now()))
        }
        _ => Err(format!("exp {} iat {}", claims["exp"], claims["iat"])),
    };
    c.check("token.lifetime", "IS-10 §Tokens exp (30-3600 s); token_schema.json exp", lifetime);
    c.check("token.x_nmos", "token_schema.json x-nmos-*; IS-10 §Tokens scope", nmos_claims(&claims));
}

/// `x-nmos-<api>` claims: objects of non-empty arrays of path strings (`read`, `write`), none
/// empty, each for an API in `scope`.
fn nmos_claims(claims: &Value) -> Checked {
    let scope: Vec<&str> = match &claims["scope"] {
        Value::String(s) => s.split(' ').filter(|s| !s.is_empty()).collect(),
        Value::Null => Vec::new(),
        other => return Err(format!("scope {other} is not a space-separated string")),
    };
    let mut found = Vec::new();
    let mut wrong = Vec::new();
    for (name, value) in claims.as_object().into_iter().flatten() {
        let Some(api) = name.strip_prefix("x-nmos-") else { continue };
        found.push(name.clone());
        if api.is_empty() || !api.bytes().all(|b| b.is_ascii_lowercase()) {
            wrong.push(format!("{name}: the name is not x-nmos-[a-z]+"));
        }
        match value.as_object() {
            Some(permissions) if !permissions.is_empty() => {
                for (key, paths) in permissions {
                    if !paths.as_array().is_some_and(|p| !p.is_empty() && p.iter().all(Value::is_string)) {
                        wrong.push(format!("{name}.{key} is not a non-empty array of strings: {paths}"));
                    }
                }
            }
            _ => wrong.push(format!("{name} is not a non-empty object: {value}")),
        }
        if !scope.contains(&api) {
            wrong.push(format!("{name} without {api:?} in scope {scope:?}"));
        }
    }
    if !wrong.is_empty() {
        return Err(wrong.join("; "));
    }
    Ok(if found.is_empty() {
        format!("scope {scope:?}, no x-nmos-* claims")
    } else {
        format!("{} in the schema's shape, each in scope", found.join(", "))
    })
}

async fn check_cors(c: &mut Checker, endpoints: &[(&str, String, &str)]) {
    const ORIGIN: &str = "https://controller.example";
    let mut wrong = Vec::new();
    for (name, url, method) in endpoints {
        let request = c
            .http
            .request(reqwest::Method::OPTIONS, url)
            .header("Origin", ORIGIN)
            .header("Access-Control-Request-Method", *method)
            .header("Access-Control-Request-Headers", "authorization, content-type");
        let sent = format!("OPTIONS {url} (Origin {ORIGIN}, {method}, Authorization)");
        match c.send(request, sent).await {
            Ok(e) => {
                let origin_ok = e.header("access-control-allow-origin").is_some_and(|o| o == "*" || o == ORIGIN);
                let headers = e.header("access-control-allow-headers").unwrap_or_default().to_ascii_lowercase();
                let headers_ok = headers.split(',').any(|h| matches!(h.trim(), "authorization" | "*"));
                if !(200..300).contains(&e.status) || !origin_ok || !headers_ok {
                    wrong.push(format!("{name}: a pre-flight without credentials must succeed with Access-Control-Allow-Origin and Authorization allowed\n{}\n  headers: allow-origin {:?}, allow-headers {:?}", e.show(), e.header("access-control-allow-origin"), e.header("access-control-allow-headers")));
                }
            }
            Err(e) => wrong.push(e),
        }
    }
    c.check(
        "cors.preflight",
        "IS-10 §CORS; Fetch (CORS protocol)",
        if wrong.is_empty() {
            Ok(format!("{} endpoints answer pre-flights, Authorization allowed", endpoints.len()))
        } else {
            Err(wrong.join("\n"))
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_names_the_authority_and_the_selector() {
        assert_eq!(locate("http://h:4999").unwrap(), ("http://h:4999".into(), None));
        assert_eq!(
            locate("https://h/x-nmos/auth/v1.0/").unwrap(),
            ("https://h".into(), Some("x-nmos/auth/v1.0".into()))
        );
        assert_eq!(
            locate("http://h:1/.well-known/oauth-authorization-server/x-nmos/auth/v1.0").unwrap(),
            ("http://h:1".into(), Some("x-nmos/auth/v1.0".into()))
        );
        assert_eq!(locate("http://h:1/.well-known/oauth-authorization-server").unwrap(), ("http://h:1".into(), None));
        assert!(locate("ftp://h").is_err());
        assert!(locate("not a url").is_err());
    }

    #[test]
    fn a_unicast_advertisement_needs_an_address_record() {
        let seen = |addresses: &[&str]| Seen {
            name: "Auth._nmos-auth._tcp.plant.example.".into(),
            port: 443,
            addresses: addresses.iter().map(|a| (*a).to_owned()).collect(),
            txt: [("api_proto", "https"), ("api_ver", "v1.0"), ("pri", "0"), ("api_selector", "x-nmos/auth/v1.0")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            problems: Vec::new(),
        };
        let judge = |seen: Seen| {
            let mut c = Checker { http: reqwest::Client::new(), outcomes: Vec::new() };
            let urls: &[&str] = &["https://auth.plant.example"];
            judge_advertisement(&mut c, ("id", "clause"), &[seen], (urls, false), Some("x-nmos/auth/v1.0"), "here");
            c.outcomes.pop().unwrap()
        };
        assert_eq!(judge(seen(&["auth.plant.example", "192.0.2.10"])).verdict, Verdict::Pass);
        let without = judge(seen(&["auth.plant.example"]));
        assert_eq!(without.verdict, Verdict::Fail, "{}", without.detail);
        assert!(without.detail.contains("no A or AAAA record"), "{}", without.detail);
    }

    #[test]
    fn nmos_claims_follow_the_token_schema() {
        let good = json!({"scope": "registration query", "x-nmos-registration": {"read": ["*"], "write": ["*"]}});
        assert!(nmos_claims(&good).is_ok());
        for bad in [
            json!({"scope": "query", "x-nmos-registration": {"read": ["*"]}}),
            json!({"scope": "registration", "x-nmos-registration": {}}),
            json!({"scope": "registration", "x-nmos-registration": {"read": []}}),
            json!({"scope": "registration", "x-nmos-registration": {"read": "*"}}),
            json!({"scope": ["registration"], "x-nmos-registration": {"read": ["*"]}}),
        ] {
            assert!(nmos_claims(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn junit_and_json_carry_every_outcome() {
        let report = Report {
            target: "http://h".into(),
            outcomes: vec![
                Outcome {
                    id: "a.b",
                    clause: "RFC 1 §1",
                    verdict: Verdict::Fail,
                    detail: "sent <x> & got \"y\"".into(),
                },
                Outcome { id: "a.c", clause: "RFC 2", verdict: Verdict::Skip, detail: "why".into() },
                Outcome { id: "a.d", clause: "RFC 3", verdict: Verdict::Warn, detail: "hm".into() },
            ],
        };
        assert!(report.failed());
        let junit = report.junit();
        assert!(junit.contains("tests=\"3\" failures=\"1\" skipped=\"1\""), "{junit}");
        assert!(junit.contains("sent &lt;x&gt; &amp; got &quot;y&quot;"), "{junit}");
        assert_eq!(report.json()["summary"]["warn"], 1);
        assert_eq!(report.json()["checks"][0]["verdict"], "FAIL");
        assert!(report.table().contains("FAIL  a.b"));
    }
}
