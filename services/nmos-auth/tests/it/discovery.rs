//! DNS-SD: `nmos-auth serve` advertises itself over mDNS, and python-zeroconf (not ours) finds
//! it from another host, reads every TXT key, fetches the metadata at the URL they make, and
//! sees the advertisement withdrawn at shutdown. The two hosts are network namespaces this
//! test creates (as root), so the host's own mDNS traffic is neither seen nor disturbed.
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{ExpectJson, TempDir};

/// Two network namespaces joined by a veth pair, deleted on drop.
struct Hosts {
    a: String,
    b: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip (iproute2)");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Hosts {
    fn new() -> Hosts {
        // Unique per test in this process (tests run in parallel) and per process.
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("{}x{n}", std::process::id() % 100_000);
        let hosts = Hosts { a: format!("nmosauth-a-{id}"), b: format!("nmosauth-b-{id}") };
        let (va, vb) = (format!("na{id}"), format!("nb{id}"));
        ip(&["netns", "add", &hosts.a]);
        ip(&["netns", "add", &hosts.b]);
        ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb]);
        ip(&["link", "set", &va, "netns", &hosts.a]);
        ip(&["link", "set", &vb, "netns", &hosts.b]);
        ip(&["-n", &hosts.a, "addr", "add", "10.213.0.1/24", "dev", &va]);
        ip(&["-n", &hosts.b, "addr", "add", "10.213.0.2/24", "dev", &vb]);
        for (ns, dev) in [(&hosts.a, &va), (&hosts.b, &vb)] {
            ip(&["-n", ns, "link", "set", dev, "up", "multicast", "on"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        hosts
    }

    fn exec(&self, ns: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, program]);
        c
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.a]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.b]).status();
    }
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const BROWSER: &str = r#"
import json, sys, threading, urllib.request
from zeroconf import Zeroconf, ServiceBrowser, ServiceStateChange
target = sys.argv[1] + "._nmos-auth._tcp.local."
found, removed = threading.Event(), threading.Event()
result = {}
def on_change(zeroconf, service_type, name, state_change):
    if name != target:
        return
    if state_change is ServiceStateChange.Removed:
        removed.set()
    elif not found.is_set():
        info = zeroconf.get_service_info(service_type, name, timeout=3000)
        if info:
            result.update(host=info.server, port=info.port, addresses=info.parsed_addresses(),
                          txt={k.decode(): (v or b"").decode() for k, v in info.properties.items()})
            found.set()
zc = Zeroconf()
ServiceBrowser(zc, "_nmos-auth._tcp.local.", handlers=[on_change])
if not found.wait(20):
    sys.exit("not found")
txt = result["txt"]
url = "%s://%s:%d/.well-known/oauth-authorization-server/%s" % (txt["api_proto"], result["addresses"][0], result["port"], txt["api_selector"])
result["metadata"] = json.load(urllib.request.urlopen(url, timeout=5))
print(json.dumps(result), flush=True)
print(json.dumps({"removed": removed.wait(20)}), flush=True)
zc.close()
"#;

#[test]
fn zeroconf_finds_the_advertisement_and_sees_it_withdrawn() {
    let is_root = Command::new("id").arg("-u").output().map(|o| o.stdout.trim_ascii() == b"0").unwrap_or(false);
    assert!(is_root, "this test creates network namespaces and must run as root (scripts/test in CI does)");
    let hosts = Hosts::new();
    let dir = TempDir::new("discovery");
    let instance = format!("nmos-auth-test-{}", std::process::id());
    let mut serve = hosts.exec(&hosts.a, env!("CARGO_BIN_EXE_nmos-auth"));
    serve
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args([
            "--listen",
            "10.213.0.1:4999",
            "--mdns",
            "true",
            "--dns-sd-instance",
            &instance,
            "--dns-sd-priority",
            "7",
        ])
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut server = Running(serve.spawn().unwrap());

    let mut browser = hosts.exec(&hosts.b, "/usr/bin/python3");
    browser.args(["-c", BROWSER, &instance]).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut browser = Running(browser.spawn().unwrap());
    let mut lines = BufReader::new(browser.0.stdout.take().unwrap()).lines();

    let first = lines.next().and_then(Result::ok).unwrap_or_else(|| {
        let mut err = String::new();
        let _ = std::io::Read::read_to_string(browser.0.stderr.as_mut().unwrap(), &mut err);
        panic!("python-zeroconf did not resolve the service: {err}")
    });
    let found: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(found["port"], 4999);
    assert_eq!(found["addresses"], serde_json::json!(["10.213.0.1"]));
    assert_eq!(found["txt"]["api_proto"], "http");
    assert_eq!(found["txt"]["api_ver"], "v1.0");
    assert_eq!(found["txt"]["pri"], "7");
    assert_eq!(found["txt"]["api_selector"], "x-nmos/auth/v1.0");
    assert_eq!(found["metadata"]["issuer"], "http://10.213.0.1:4999/x-nmos/auth/v1.0");

    // Shutting down withdraws the advertisement.
    assert!(Command::new("kill").args(["-TERM", &server.0.id().to_string()]).status().unwrap().success());
    let status = server.0.wait().unwrap();
    assert!(status.success(), "serve exited with {status}");
    let second: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(second["removed"], true, "the advertisement is withdrawn at shutdown");
    std::thread::sleep(Duration::from_millis(100));
}

/// `nmos-auth check --mdns`, from the other host: it finds the server's advertisement and holds
/// its TXT records to IS-10 (a development priority, 100 and above, is a WARN; here 7).
#[test]
fn the_checker_finds_the_advertisement_over_mdns() {
    let hosts = Hosts::new();
    let dir = TempDir::new("check-mdns");
    let instance = format!("nmos-auth-check-{}", std::process::id());
    let mut serve = hosts.exec(&hosts.a, env!("CARGO_BIN_EXE_nmos-auth"));
    serve
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--listen", "10.213.0.1:4999", "--mdns", "true", "--dns-sd-instance", &instance])
        .args(["--dns-sd-priority", "7", "serve"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _server = Running(serve.spawn().unwrap());
    let metadata = "http://10.213.0.1:4999/.well-known/oauth-authorization-server";
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !hosts.exec(&hosts.b, "curl").args(["-sf", "-o", "/dev/null", metadata]).status().unwrap().success() {
        assert!(std::time::Instant::now() < deadline, "serve did not answer at {metadata}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut check = hosts.exec(&hosts.b, env!("CARGO_BIN_EXE_nmos-auth"));
    check.args(["check", "http://10.213.0.1:4999", "--mdns", "6", "--format", "json"]);
    let out = check.output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    });
    let mdns = report["checks"].as_array().unwrap().iter().find(|c| c["id"] == "discovery.mdns").unwrap();
    assert_eq!(mdns["verdict"], "PASS", "{report:#}");
    assert!(mdns["detail"].as_str().unwrap().contains(&instance), "{mdns}");
    assert_eq!(report["summary"]["fail"], 0, "{report:#}");
}

/// An NMOS Node as nmos-cpp behaves, in Python with PyJWT and python-zeroconf (none of it
/// ours): it discovers the server by mDNS, reads the metadata at the URL the TXT records make,
/// registers with JSON and an initial access token, serves its JWKS over https, gets a
/// client_credentials token with an RS256 private_key_jwt assertion, verifies the token against
/// the server's JWKS, and tries the assertions that must fail.
const NODE: &str = r#"
import functools, http.server, json, ssl, sys, threading, time, urllib.error, urllib.parse, urllib.request, uuid
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from zeroconf import ServiceBrowser, Zeroconf

instance, initial_access_token, cert, key, workdir = sys.argv[1:6]
target = instance + "._nmos-auth._tcp.local."
found = threading.Event()
service = {}
def on_change(zeroconf, service_type, name, state_change):
    if name == target and not found.is_set():
        info = zeroconf.get_service_info(service_type, name, timeout=3000)
        if info:
            service.update(address=info.parsed_addresses()[0], port=info.port,
                           txt={k.decode(): (v or b"").decode() for k, v in info.properties.items()})
            found.set()
zc = Zeroconf()
ServiceBrowser(zc, "_nmos-auth._tcp.local.", handlers=[on_change])
if not found.wait(20):
    sys.exit("the authorization server was not found over mDNS")
zc.close()
txt = service["txt"]
base = "%s://%s:%d" % (txt["api_proto"], service["address"], service["port"])
metadata = json.load(urllib.request.urlopen(base + "/.well-known/oauth-authorization-server/" + txt["api_selector"], timeout=5))

def call(url, data, headers):
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)

# The Node's keys, at its own jwks_uri over https (kid "1", RS256, as nmos-cpp publishes them).
node_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(node_key.public_key()))
jwk.update(kid="1", use="sig", alg="RS256")
with open(workdir + "/jwks.json", "w") as f:
    json.dump({"keys": [jwk]}, f)
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=workdir)
class Quiet(handler.func):
    def log_message(self, *args):
        pass
files = http.server.ThreadingHTTPServer(("10.213.0.2", 0), functools.partial(Quiet, directory=workdir))
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
files.socket = context.wrap_socket(files.socket, server_side=True)
threading.Thread(target=files.serve_forever, daemon=True).start()
jwks_uri = "https://10.213.0.2:%d/jwks.json" % files.server_address[1]

status, client = call(metadata["registration_endpoint"], json.dumps({
    "client_name": "nmos-cpp-like node", "grant_types": ["client_credentials"], "response_types": ["none"],
    "scope": "registration", "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": jwks_uri,
}).encode(), {"Content-Type": "application/json", "Authorization": "Bearer " + initial_access_token})
assert status == 201, (status, client)
client_id = client["client_id"]
token_endpoint = metadata["token_endpoint"]

def assertion(key=node_key, kid="1", alg="RS256", aud=token_endpoint, lifetime=30, jti=None):
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": aud, "iat": now, "exp": now + lifetime,
              "jti": jti or str(uuid.uuid4())}
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid, "typ": "JWT"})

def token(signed):
    form = urllib.parse.urlencode({
        "grant_type": "client_credentials", "scope": "registration", "client_id": client_id,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": signed,
    }).encode()
    return call(token_endpoint, form, {"Content-Type": "application/x-www-form-urlencoded"})

good = assertion()
status, tokens = token(good)
assert status == 200, (status, tokens)
signing_key = jwt.PyJWKClient(metadata["jwks_uri"]).get_signing_key_from_jwt(tokens["access_token"])
claims = jwt.decode(tokens["access_token"], signing_key.key, algorithms=["RS512"], issuer=metadata["issuer"],
                    options={"verify_aud": False})
now = int(time.time())
bad = {
    "replayed jti": good,
    "wrong aud": assertion(aud="https://elsewhere.example/token"),
    "expired": assertion(lifetime=-60),
    "unknown kid": assertion(kid="2"),
    "another key": assertion(key=other_key),
    "alg none": jwt.encode({"iss": client_id, "sub": client_id, "aud": token_endpoint, "exp": now + 30,
                            "jti": str(uuid.uuid4())}, None, algorithm="none"),
    "HMAC": assertion(key="a shared secret is not the client's key", alg="HS256"),
}
refusals = {why: token(signed) for why, signed in bad.items()}
print(json.dumps({"service": service, "metadata": metadata, "client_id": client_id, "claims": claims,
                  "token_type": tokens["token_type"], "refusals": refusals}), flush=True)
files.shutdown()
"#;

#[test]
fn a_node_discovers_registers_and_signs_its_assertions() {
    let hosts = Hosts::new();
    let dir = TempDir::new("node");
    let data = dir.path().join("data");
    let instance = format!("nmos-auth-node-test-{}", std::process::id());
    // The Node's https certificate, for its address on the other host; the server trusts it.
    let (cert, key) = crate::harness::server_certificate(dir.path(), "node", "IP:10.213.0.2");
    let out = Command::new(env!("CARGO_BIN_EXE_nmos-auth"))
        .arg("--data-dir")
        .arg(&data)
        .args(["admin", "create-initial-access-token", "--description", "fleet"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let initial_access_token = String::from_utf8(out.stdout).unwrap().lines().last().unwrap().trim().to_owned();

    let mut serve = hosts.exec(&hosts.a, env!("CARGO_BIN_EXE_nmos-auth"));
    serve.arg("--data-dir").arg(&data).arg("--jwks-ca-bundle").arg(&cert);
    serve.args(["--listen", "10.213.0.1:4999", "--mdns", "true", "--dns-sd-instance", &instance]);
    serve.arg("serve").stdout(Stdio::null()).stderr(Stdio::null());
    let _server = Running(serve.spawn().unwrap());

    let node_dir = TempDir::new("node-files");
    let mut node = hosts.exec(&hosts.b, "/usr/bin/python3");
    node.args(["-c", NODE, &instance, &initial_access_token])
        .arg(&cert)
        .arg(&key)
        .arg(node_dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = node.output().unwrap();
    assert!(out.status.success(), "the Node failed: {}", String::from_utf8_lossy(&out.stderr));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();

    assert_eq!(result["service"]["address"], "10.213.0.1");
    assert_eq!(result["metadata"]["issuer"], "http://10.213.0.1:4999/x-nmos/auth/v1.0");
    let client_id = result["client_id"].as_str().unwrap();
    assert_eq!(result["claims"]["sub"], client_id);
    assert_eq!(result["claims"]["client_id"], client_id);
    assert_eq!(result["claims"]["x-nmos-registration"], serde_json::json!({"read": ["*"], "write": ["*"]}));
    assert_eq!(result["token_type"], "Bearer");
    let refusals = result["refusals"].as_object().unwrap();
    assert_eq!(refusals.len(), 7);
    for (why, refusal) in refusals {
        assert_eq!(refusal[0], 401, "{why}: {refusal}");
        assert_eq!(refusal[1]["error"], "invalid_client", "{why}: {refusal}");
    }
}

/// A throwaway Knot DNS server for `plant.example.`, on a free loopback port.
struct Knot {
    port: u16,
    _running: Running,
}

impl Knot {
    /// Serves `records` in the zone; `update_key` (a base64 hmac-sha256 secret) lets the key
    /// `nmos-auth.` update it.
    fn start(dir: &std::path::Path, records: &str, update_key: Option<&str>) -> Knot {
        let zone = format!(
            "$ORIGIN plant.example.\n$TTL 3600\n@ IN SOA ns.plant.example. admin.plant.example. 1 3600 600 86400 60\n\
             @ IN NS ns.plant.example.\nns IN A 192.0.2.1\n{records}"
        );
        std::fs::write(dir.join("plant.example.zone"), zone).unwrap();
        let port = crate::harness::free_listener().local_addr().unwrap().port();
        let d = dir.display();
        let (keys, acl) = match update_key {
            Some(secret) => (
                format!(
                    "key:\n  - id: nmos-auth.\n    algorithm: hmac-sha256\n    secret: {secret}\n\
                     acl:\n  - id: dns-sd-update\n    key: nmos-auth.\n    action: update\n"
                ),
                "    acl: dns-sd-update\n",
            ),
            None => (String::new(), ""),
        };
        let config = format!(
            "server:\n    listen: 127.0.0.1@{port}\n    rundir: {d}\ndatabase:\n    storage: {d}\n{keys}\
             zone:\n  - domain: plant.example.\n    storage: {d}\n    file: plant.example.zone\n{acl}"
        );
        std::fs::write(dir.join("knot.conf"), config).unwrap();
        let knot = Command::new("knotd")
            .arg("-c")
            .arg(dir.join("knot.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("knotd (apt-get install knot; scripts/test does this)");
        let knot = Knot { port, _running: Running(knot) };
        // dig prints its own errors ("connection refused" while knotd is still binding) where
        // the answer would be, so only the SOA record itself means the zone is served.
        for _ in 0..100 {
            if knot.dig("SOA", "plant.example.").starts_with("ns.plant.example. ") {
                return knot;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("knotd did not start");
    }

    fn dig(&self, kind: &str, name: &str) -> String {
        let out = Command::new("dig")
            .args(["+short", "+tries=1", "+time=2", "-p", &self.port.to_string(), "@127.0.0.1", kind, name])
            .output()
            .expect("dig (apt-get install bind9-dnsutils)");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// Digs until the answer is `expected` (or 10 s have passed); returns the last answer.
    fn dig_until(&self, kind: &str, name: &str, expected: &str) -> String {
        let mut answer = String::new();
        for _ in 0..100 {
            answer = self.dig(kind, name);
            if answer == expected {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        answer
    }
}

/// The zone fragment of `nmos-auth dns-sd zone` loads into a real DNS server (Knot), and dig
/// reads back the PTR, SRV and TXT records a Node's unicast DNS-SD lookup needs.
#[test]
fn zone_fragment_loads_into_knot() {
    let dir = TempDir::new("zone");
    let out = Command::new(env!("CARGO_BIN_EXE_nmos-auth"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--public-url", "https://auth.plant.example:443", "--dns-sd-addresses", "192.0.2.10"])
        .args(["--dns-sd-priority", "0", "--dns-sd-instance", "Auth A", "dns-sd", "zone", "--domain", "plant.example"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let knot = Knot::start(dir.path(), &String::from_utf8(out.stdout).unwrap(), None);
    let instance = r"Auth\032A._nmos-auth._tcp.plant.example.";
    assert_eq!(knot.dig("SRV", instance), "0 0 443 auth.plant.example.");
    assert_eq!(
        knot.dig("TXT", instance),
        r#""api_proto=https" "api_ver=v1.0" "pri=0" "api_selector=x-nmos/auth/v1.0""#
    );
    assert_eq!(knot.dig("PTR", "_nmos-auth._tcp.plant.example.").to_lowercase(), instance.to_lowercase());
    assert_eq!(knot.dig("A", "auth.plant.example."), "192.0.2.10");
}

/// RFC 2136 with TSIG against Knot: `nmos-auth serve` puts its records in the zone and takes
/// them out at shutdown; the sidecar takes them out while the gateway is down and puts them back
/// when it returns; a wrong secret or key name is refused, with the server's reason.
#[test]
fn dynamic_updates_keep_the_records_in_knot() {
    let dir = TempDir::new("ddns");
    let secret = "bm1vcy1hdXRoIHRlc3QgVFNJRyBrZXkgMDEyMzQ1Njc=";
    // Another server's instance shares the PTR RRset and must survive our withdrawals.
    let other = "_nmos-auth._tcp 3600 IN PTR other._nmos-auth._tcp\n\
                 other._nmos-auth._tcp 3600 IN SRV 0 0 443 other.plant.example.\n";
    let knot = Knot::start(dir.path(), other, Some(secret));
    let port = crate::harness::free_listener().local_addr().unwrap().port();
    let nmos_auth = |command: &str, updates: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_nmos-auth"));
        c.arg("--data-dir").arg(dir.path().join("data"));
        c.args(["--listen", &format!("127.0.0.1:{port}"), "--mdns", "false"]);
        c.args(["--public-url", &format!("http://auth.plant.example:{port}"), "--dns-sd-addresses", "192.0.2.10"]);
        c.args(["--dns-sd-instance", "Auth B", "--dns-sd-priority", "3", "--dns-sd-domain", "plant.example"]);
        if updates {
            c.args(["--dns-sd-update-server", &format!("127.0.0.1:{}", knot.port), "--dns-sd-tsig-key", "nmos-auth"]);
            c.env("NMOS_AUTH_DNS_SD_TSIG_SECRET", secret);
        }
        c.arg(command).stdout(Stdio::null()).stderr(Stdio::null());
        Running(c.spawn().unwrap())
    };
    let stop = |mut running: Running| {
        assert!(Command::new("kill").args(["-TERM", &running.0.id().to_string()]).status().unwrap().success());
        let status = running.0.wait().unwrap();
        assert!(status.success(), "exited with {status}");
    };
    let instance = r"Auth\032B._nmos-auth._tcp.plant.example.";
    let srv = format!("0 0 {port} auth.plant.example.");
    let ptr = |knot: &Knot| {
        let mut names: Vec<String> =
            knot.dig("PTR", "_nmos-auth._tcp.plant.example.").lines().map(str::to_lowercase).collect();
        names.sort();
        names.join(" ")
    };
    let both = format!("{} other._nmos-auth._tcp.plant.example.", instance.to_lowercase());

    let server = nmos_auth("serve", true);
    assert_eq!(knot.dig_until("SRV", instance, &srv), srv, "serve adds its records");
    assert_eq!(knot.dig("TXT", instance), r#""api_proto=http" "api_ver=v1.0" "pri=3" "api_selector=x-nmos/auth/v1.0""#);
    assert_eq!(ptr(&knot), both);
    assert_eq!(knot.dig("A", "auth.plant.example."), "192.0.2.10");
    // The checker finds them (its instance among two, by the issuer's host and port) and holds
    // them to IS-10; in a domain with no advertisement it fails.
    let unicast = |domain: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_nmos-auth"))
            .args(["check", &format!("http://127.0.0.1:{port}"), "--format", "json", "--domain", domain])
            .args(["--dns-server", &format!("127.0.0.1:{}", knot.port)])
            .env_remove("NMOS_AUTH_CHECK_INITIAL_ACCESS_TOKEN")
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        let checks = report["checks"].as_array().unwrap();
        checks.iter().find(|c| c["id"] == "discovery.unicast_dns_sd").cloned().unwrap()
    };
    let found = unicast("plant.example");
    assert_eq!(found["verdict"], "PASS", "{found}");
    let detail = found["detail"].as_str().unwrap().to_lowercase();
    assert!(detail.contains("auth b._nmos-auth._tcp.plant.example.") && !detail.contains("other"), "{found}");
    let missing = unicast("elsewhere.example");
    assert_eq!(missing["verdict"], "FAIL", "{missing}");
    stop(server);
    assert_eq!(knot.dig_until("SRV", instance, ""), "", "serve removes them at shutdown");
    assert_eq!(knot.dig("TXT", instance), "");
    assert_eq!(ptr(&knot), "other._nmos-auth._tcp.plant.example.", "other instances stay");

    // The sidecar follows a gateway that runs without updates of its own.
    let server = nmos_auth("serve", false);
    let sidecar = nmos_auth("discovery", true);
    assert_eq!(knot.dig_until("SRV", instance, &srv), srv, "the sidecar adds the records");
    stop(server);
    assert_eq!(knot.dig_until("SRV", instance, ""), "", "and removes them while the gateway is down");
    let server = nmos_auth("serve", false);
    assert_eq!(knot.dig_until("SRV", instance, &srv), srv, "and adds them again when it is back");
    stop(sidecar);
    assert_eq!(knot.dig_until("SRV", instance, ""), "", "and removes them when it stops");
    stop(server);

    // Refusals come back with the server's reason.
    let refused = |key: &str, secret: &str| {
        let config = nmos_auth_core::Config {
            public_url: Some("http://auth.plant.example:4999".into()),
            dns_sd_domain: Some("plant.example".into()),
            dns_sd_update_server: Some(format!("127.0.0.1:{}", knot.port).parse().unwrap()),
            dns_sd_tsig_key: Some(key.into()),
            dns_sd_tsig_secret: Some(nmos_auth_core::secret::Secret::new(secret)),
            ..nmos_auth_core::Config::default()
        };
        let updater = nmos_auth_discovery::DnsUpdater::from_config(&config).unwrap().unwrap();
        let ad = nmos_auth_discovery::Advertisement::from_config(&config).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        format!("{:#}", runtime.block_on(updater.publish(&ad)).unwrap_err())
    };
    let wrong_secret = refused("nmos-auth", "d3JvbmcgVFNJRyBzZWNyZXQgMDEyMzQ1Njc4OQ==");
    assert!(wrong_secret.contains("BADSIG") || wrong_secret.contains("NOTAUTH"), "{wrong_secret}");
    let unknown_key = refused("someone-else", secret);
    assert!(unknown_key.contains("BADKEY") || unknown_key.contains("NOTAUTH"), "{unknown_key}");
    assert_eq!(knot.dig("SRV", instance), "", "refused updates change nothing");
}

const EVENTS: &str = r#"
import sys, time
from zeroconf import Zeroconf, ServiceBrowser, ServiceStateChange
target = sys.argv[1] + "._nmos-auth._tcp.local."
def on_change(zeroconf, service_type, name, state_change):
    if name == target and state_change in (ServiceStateChange.Added, ServiceStateChange.Removed):
        print(state_change.name.lower(), flush=True)
zc = Zeroconf()
ServiceBrowser(zc, "_nmos-auth._tcp.local.", handlers=[on_change])
time.sleep(float(sys.argv[2]))
zc.close()
"#;

/// `nmos-auth discovery` on its own: it advertises while the gateway answers, withdraws the
/// advertisement while it does not, and announces it again when the gateway is back.
#[test]
fn sidecar_follows_the_gateways_health() {
    let hosts = Hosts::new();
    let dir = TempDir::new("sidecar");
    let instance = format!("nmos-auth-sidecar-{}", std::process::id());
    let gateway = || {
        let mut c = hosts.exec(&hosts.a, env!("CARGO_BIN_EXE_nmos-auth"));
        c.arg("--data-dir").arg(dir.path().join("data"));
        c.args(["--listen", "10.213.0.1:4999", "--mdns", "false", "serve"]).stdout(Stdio::null()).stderr(Stdio::null());
        Running(c.spawn().unwrap())
    };
    let stop = |mut running: Running| {
        assert!(Command::new("kill").args(["-TERM", &running.0.id().to_string()]).status().unwrap().success());
        let status = running.0.wait().unwrap();
        assert!(status.success(), "exited with {status}");
    };
    let server = gateway();
    let mut sidecar = hosts.exec(&hosts.a, env!("CARGO_BIN_EXE_nmos-auth"));
    sidecar
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--listen", "10.213.0.1:4999", "--dns-sd-instance", &instance, "discovery"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let sidecar = Running(sidecar.spawn().unwrap());
    let mut browser = hosts.exec(&hosts.b, "/usr/bin/python3");
    browser.args(["-c", EVENTS, &instance, "60"]).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut browser = Running(browser.spawn().unwrap());
    let mut events = BufReader::new(browser.0.stdout.take().unwrap()).lines();
    let mut next = || events.next().and_then(Result::ok).unwrap_or_else(|| "(no more events)".into());

    assert_eq!(next(), "added", "advertised while the gateway answers");
    stop(server);
    assert_eq!(next(), "removed", "withdrawn while the gateway is down");
    let server = gateway();
    assert_eq!(next(), "added", "announced again when it is back");
    stop(sidecar);
    assert_eq!(next(), "removed", "withdrawn when the sidecar stops");
    stop(server);
}

/// The resource-server crate finds the server by mDNS: from the Node's namespace (a thread of
/// this test moved into it), where no DNS server answers for the unicast domain, `DnsSd` taking
/// plain http browses mDNS, reads the metadata and keys at the advertised URL, and accepts a
/// token the server issued there; `DnsSd` as it comes (https servers only) finds none.
#[test]
fn the_resource_server_crate_finds_the_server_by_dns_sd() {
    let hosts = Hosts::new();
    let dir = TempDir::new("rs-dns-sd");
    let data = dir.path().join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_nmos-auth"))
        .arg("--data-dir")
        .arg(&data)
        .args(["admin", "create-initial-access-token"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let initial_access_token = String::from_utf8(out.stdout).unwrap().lines().last().unwrap().trim().to_owned();
    let instance = format!("nmos-auth-rs-test-{}", std::process::id());
    let mut serve = hosts.exec(&hosts.a, env!("CARGO_BIN_EXE_nmos-auth"));
    serve.arg("--data-dir").arg(&data);
    serve.args(["--listen", "10.213.0.1:4999", "--mdns", "true", "--dns-sd-instance", &instance, "serve"]);
    let _server = Running(serve.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());

    let namespace = format!("/run/netns/{}", hosts.b);
    let outcome = std::thread::spawn(move || {
        let netns = std::fs::File::open(&namespace).expect("the Node's namespace");
        nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET).expect("entering the Node's namespace");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            use nmos_auth_resource_server::{DnsSd, ResourceServer, ServerLocation, Settings, UnknownKey};
            let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build().unwrap();
            let base = "http://10.213.0.1:4999/x-nmos/auth/v1.0";
            for _ in 0..100 {
                if http.get(format!("{base}/jwks")).send().await.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let client: Value = http
                .post(format!("{base}/register"))
                .bearer_auth(&initial_access_token)
                .json(&serde_json::json!({"client_name": "node", "grant_types": ["client_credentials"], "scope": "registration"}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let tokens: Value = http
                .post(format!("{base}/token"))
                .basic_auth(client["client_id"].as_str().unwrap(), client["client_secret"].as_str())
                .form(&[("grant_type", "client_credentials"), ("scope", "registration")])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let settings =
                Settings { unknown_key: UnknownKey::Wait(Duration::from_secs(15)), ..Settings::new("registry.example.com") };
            // The server here runs plain http, which `DnsSd` alone would not take. Nothing
            // listens at the unicast DNS server given, so the lookup falls back to mDNS.
            let unicast_fails = || DnsSd {
                domain: Some("plant.example".into()),
                dns_server: Some("10.213.0.1:9".parse().unwrap()),
                ..DnsSd::default()
            };
            let dns_sd = DnsSd { plain_http: true, ..unicast_fails() };
            let rs = ResourceServer::new(ServerLocation::DnsSd(dns_sd), settings);
            let bearer = format!("Bearer {}", tokens["access_token"].as_str().unwrap());
            let checked = rs.check(&axum::http::Method::GET, "/x-nmos/registration/v1.3/", Some(&bearer), None).await;
            let strict = nmos_auth_resource_server::KeyCache::new(ServerLocation::DnsSd(unicast_fails()), http.clone());
            let https_only = strict.fetch().await.map_err(|e| e.to_string());
            (
                checked.map(|c| c.is_some()).map_err(|d| d.reason),
                rs.keys().current().map(|k| k.issuer.clone()),
                https_only,
            )
        })
    })
    .join()
    .unwrap();
    assert_eq!(outcome.0, Ok(true), "the token checks out against the discovered server's keys");
    assert_eq!(outcome.1.as_deref(), Some("http://10.213.0.1:4999/x-nmos/auth/v1.0"));
    assert!(outcome.2.is_err(), "a plain-http server is not taken by DnsSd: {:?}", outcome.2);
}

/// The resource-server crate finds the server by unicast DNS-SD, which IS-10 requires resource
/// servers to support, in a real DNS server (Knot): of three instances it tries the highest
/// priority first (`pri=0`, where nothing listens), then the next (`pri=1`) rather than the last
/// (`pri=5`), and accepts that server's tokens; an instance whose name holds a space and a dot
/// survives the lookups. A token of the `pri=5` server is accepted once its keys are fetched
/// (at once, or after a 503 as nmos-testing's secondary server expects); a token of a server not
/// advertised is refused. Taking https servers only, or in another domain, it finds none.
#[tokio::test(flavor = "multi_thread")]
async fn the_resource_server_crate_finds_the_server_by_unicast_dns_sd() {
    use nmos_auth_resource_server::{
        DnsSd, FetchError, KeyCache, ResourceServer, ServerLocation, Settings, UnknownKey,
    };
    let preferred = crate::harness::TestApp::spawn(crate::harness::Backend::Sqlite).await;
    let other = crate::harness::TestApp::spawn(crate::harness::Backend::Sqlite).await;
    let unadvertised = crate::harness::TestApp::spawn(crate::harness::Backend::Sqlite).await;
    let port = |app: &crate::harness::TestApp| app.config.listen.port();
    let dead = crate::harness::free_listener().local_addr().unwrap().port();
    let instance = |name: &str, port: u16, pri: u32| {
        format!(
            "_nmos-auth._tcp IN PTR {name}._nmos-auth._tcp\n\
             {name}._nmos-auth._tcp IN SRV 0 0 {port} auth.plant.example.\n\
             {name}._nmos-auth._tcp IN TXT \"api_ver=v1.0\" \"api_proto=http\" \"pri={pri}\" \
             \"api_selector=x-nmos/auth/v1.0\"\n"
        )
    };
    let records = [
        instance("gone", dead, 0),
        instance(r"Studio\0321\.A", port(&preferred), 1),
        instance("backup", port(&other), 5),
        "auth IN A 127.0.0.1\n".into(),
    ];
    let dir = TempDir::new("rs-unicast");
    let knot = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        move || Knot::start(&dir, &records.concat(), None)
    })
    .await
    .unwrap();
    let dns_sd = |domain: &str, plain_http: bool| DnsSd {
        domain: Some(domain.into()),
        dns_server: Some(format!("127.0.0.1:{}", knot.port).parse().unwrap()),
        multicast: false,
        plain_http,
        ..DnsSd::default()
    };

    async fn bearer(app: &crate::harness::TestApp) -> String {
        let (id, secret) = app.machine_client("registration").await;
        let response = app.token(&id, &secret, &[("grant_type", "client_credentials")]).await;
        format!("Bearer {}", response.expect_json(200).await["access_token"].as_str().unwrap())
    }
    let path = "/x-nmos/registration/v1.3/";
    let get = axum::http::Method::GET;
    let rs = ResourceServer::new(
        ServerLocation::DnsSd(dns_sd("plant.example", true)),
        Settings::new("registry.example.com"),
    );
    let checked = rs.check(&get, path, Some(&bearer(&preferred).await), None).await;
    assert!(matches!(checked, Ok(Some(_))), "the token checks out: {checked:?}");
    assert_eq!(rs.keys().current().map(|k| k.issuer.clone()), Some(preferred.issuer()), "pri=1, after pri=0 failed");
    let from_other = bearer(&other).await;
    let checked = rs.check(&get, path, Some(&from_other), None).await;
    assert!(matches!(checked, Ok(Some(_))), "the pri=5 server's token, after a fetch of its keys: {checked:?}");
    let stranger = bearer(&unadvertised).await;
    let refused = rs.check(&get, path, Some(&stranger), None).await.unwrap_err();
    assert_eq!((refused.status, refused.reason.as_str()), (401, "the token is from another issuer"));

    // As nmos-testing's secondary server expects: 503 while the keys are fetched, then 200.
    let settings = Settings { unknown_key: UnknownKey::Unavailable, ..Settings::new("registry.example.com") };
    let rs_503 = ResourceServer::new(ServerLocation::DnsSd(dns_sd("plant.example", true)), settings);
    rs_503.keys().fetch().await.unwrap();
    let first = rs_503.check(&get, path, Some(&from_other), None).await.unwrap_err();
    assert_eq!(first.status, 503, "{first:?}");
    let mut answer = Err(first);
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        answer = rs_503.check(&get, path, Some(&from_other), None).await;
        if answer.is_ok() {
            break;
        }
    }
    assert!(matches!(answer, Ok(Some(_))), "accepted once the keys are in: {answer:?}");

    let http = reqwest::Client::new();
    let https_only = KeyCache::new(ServerLocation::DnsSd(dns_sd("plant.example", false)), http.clone());
    let refused = https_only.fetch().await;
    assert!(matches!(refused, Err(FetchError::NotFound)), "plain-http servers are not taken: {refused:?}");
    let elsewhere = KeyCache::new(ServerLocation::DnsSd(dns_sd("elsewhere.example", true)), http);
    let missing = elsewhere.fetch().await;
    assert!(matches!(missing, Err(FetchError::NotFound)), "no servers in another domain: {missing:?}");

    // A lookup that fails withdraws nothing: with the DNS server gone, a fetch fails, and both
    // servers' tokens are still accepted.
    drop(knot);
    let failed = rs.keys().fetch().await;
    assert!(failed.is_err(), "{failed:?}");
    for (token, whose) in [(&from_other, "pri=5"), (&bearer(&preferred).await, "pri=1")] {
        let checked = rs.check(&get, path, Some(token), None).await;
        assert!(matches!(checked, Ok(Some(_))), "the {whose} server's token: {checked:?}");
    }
}
