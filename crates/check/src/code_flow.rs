//! The authorization code flow (RFC 6749 §4.1) with PKCE (RFC 7636), as a browser-based
//! controller meets it: the authorization endpoint's answers to requests that must fail, which
//! need no one; and, when a person signs in and approves, a code, its exchange, its single use
//! and the rotation of the refresh token it brings. The checker registers a public client whose
//! redirect URI is a loopback address it listens on (RFC 8252 §7.3), so the browser of a person
//! on the checker's machine brings each code straight back.
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::{Checker, Exchange, Verdict, now};

/// A person who signs in at the server and approves the checker's requests, for the checks that
/// need a code. Told each address to open in a browser on the checker's machine.
#[derive(Clone)]
pub struct Person {
    /// Shows the person the address to open (the command prints it).
    pub open: Arc<dyn Fn(&str) + Send + Sync>,
    /// How long to wait for each approval.
    pub within: Duration,
}

impl std::fmt::Debug for Person {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Person").field("within", &self.within).finish_non_exhaustive()
    }
}

const PKCE_REQUIRED: &str = "IS-10 §Authorization (PKCE for public clients); RFC 7636 §4.4.1";
const PKCE_METHOD: &str = "RFC 7636 §4.3, §4.4.1";
const REDIRECT_EXACT: &str = "RFC 6749 §3.1.2.2, §4.1.2.1; RFC 9700 §4.1.3 (exact matching)";
const CODE: &str = "RFC 6749 §4.1.2; RFC 9207 §2";
const VERIFIER: &str = "RFC 7636 §4.6 (invalid_grant)";
const EXCHANGE: &str = "RFC 6749 §4.1.3, §5.1; token_response.json";
const REPLAY: &str = "RFC 6749 §4.1.2 (a code is used once), §5.2";
const ROTATION: &str = "RFC 6749 §6; RFC 9700 §4.14.2 (public clients' refresh tokens rotate)";

/// The checks of this module, each with its clause, for skipping them together.
const PERSON_CHECKS: [(&str, &str); 5] = [
    ("authorize.code", CODE),
    ("token.pkce_verifier", VERIFIER),
    ("token.code_exchange", EXCHANGE),
    ("token.refresh_rotation", ROTATION),
    ("token.code_replay", REPLAY),
];
const REQUEST_CHECKS: [(&str, &str); 3] = [
    ("authorize.pkce_required", PKCE_REQUIRED),
    ("authorize.pkce_method", PKCE_METHOD),
    ("authorize.redirect_uri", REDIRECT_EXACT),
];

/// The server's endpoints this module uses.
pub(crate) struct Endpoints<'a> {
    pub issuer: &'a str,
    pub authorization: Option<String>,
    pub token: Option<String>,
    pub registration: Option<String>,
    /// RFC 9207's `authorization_response_iss_parameter_supported`.
    pub iss_parameter: bool,
}

fn skip_all(c: &mut Checker, checks: &[(&'static str, &'static str)], why: &str) {
    for (id, clause) in checks {
        c.skip(id, clause, why);
    }
}

fn random(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // The system's generator does not fail on a working machine; an all-zero value would only
    // make the checker's state and verifier guessable, not its verdicts wrong.
    let _ = aws_lc_rs::rand::fill(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// A PKCE verifier and its S256 challenge.
fn pkce() -> (String, String) {
    let verifier = random(32);
    let challenge = URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()));
    (verifier, challenge)
}

/// Where an authorization request was sent back.
enum Answer {
    /// To a redirect URI (the query of the Location).
    Redirected { to: String, params: Vec<(String, String)> },
    /// Elsewhere, or a page of the server's (200): a sign-in, before anything is decided.
    SignIn(String),
    /// An error page (4xx), sent to no client.
    Refused(u16),
    /// Anything else.
    Other,
}

fn answer(exchange: &Exchange, base: &str) -> Answer {
    match exchange.status {
        301..=308 => {
            let Some(to) = exchange.header("location").and_then(|l| url::Url::parse(base).ok()?.join(l).ok()) else {
                return Answer::Other;
            };
            let params = to.query_pairs().map(|(n, v)| (n.into_owned(), v.into_owned())).collect();
            let mut without_query = to.clone();
            without_query.set_query(None);
            without_query.set_fragment(None);
            Answer::Redirected { to: without_query.to_string(), params }
        }
        200 => {
            Answer::SignIn(format!("a page of the server's (200 {})", exchange.header("content-type").unwrap_or("")))
        }
        400..=499 => Answer::Refused(exchange.status),
        _ => Answer::Other,
    }
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// The authorization code flow's checks.
pub(crate) async fn check_code_flow(
    c: &mut Checker,
    endpoints: &Endpoints<'_>,
    iat: Option<&str>,
    person: Option<&Person>,
) {
    let (Some(authorization), Some(token), Some(registration)) =
        (&endpoints.authorization, &endpoints.token, &endpoints.registration)
    else {
        skip_all(c, &REQUEST_CHECKS, "no authorization, token or registration endpoint");
        return skip_all(c, &PERSON_CHECKS, "no authorization, token or registration endpoint");
    };
    let listener = match TcpListener::bind("127.0.0.1:0").await {
        Ok(listener) => listener,
        Err(e) => {
            let why = format!("no loopback port for the redirect URI: {e}");
            skip_all(c, &REQUEST_CHECKS, &why);
            return skip_all(c, &PERSON_CHECKS, &why);
        }
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    let redirect = format!("http://127.0.0.1:{port}/callback");
    let client_id = match register_public(c, registration, iat, &redirect).await {
        Ok(id) => id,
        Err(why) => {
            skip_all(c, &REQUEST_CHECKS, &why);
            return skip_all(c, &PERSON_CHECKS, &why);
        }
    };
    let request = |extra: &[(&str, &str)]| {
        let mut params = vec![
            ("response_type", "code"),
            ("client_id", client_id.as_str()),
            ("redirect_uri", redirect.as_str()),
            ("scope", "registration"),
        ];
        params.extend_from_slice(extra);
        url::Url::parse_with_params(authorization, &params).map(String::from).unwrap_or_default()
    };

    // No code_challenge from a public client: refused, at the client's redirect URI.
    let state = random(12);
    let url = request(&[("state", &state)]);
    let verdict = refused_at_client(c, &url, &redirect, &state, "public clients must send a code_challenge").await;
    c.record("authorize.pkce_required", PKCE_REQUIRED, verdict.0, verdict.1);

    // A code_challenge_method that does not exist: refused likewise.
    let (_, challenge) = pkce();
    let url =
        request(&[("state", &state), ("code_challenge", &challenge), ("code_challenge_method", "S384-not-a-method")]);
    let verdict = refused_at_client(c, &url, &redirect, &state, "an unknown code_challenge_method").await;
    c.record("authorize.pkce_method", PKCE_METHOD, verdict.0, verdict.1);

    // A redirect URI that only begins like the registered one: never sent there.
    let elsewhere = format!("{redirect}/elsewhere");
    let params: Vec<(&str, &str)> = vec![
        ("response_type", "code"),
        ("client_id", &client_id),
        ("redirect_uri", &elsewhere),
        ("scope", "registration"),
        ("state", &state),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ];
    let url = url::Url::parse_with_params(authorization, &params).map(String::from).unwrap_or_default();
    let (verdict, detail) = match c.get(&url).await {
        Ok(e) => match answer(&e, &url) {
            Answer::Redirected { to, .. } if to == elsewhere => {
                (Verdict::Fail, format!("sent the browser to a redirect URI that was never registered\n{}", e.show()))
            }
            Answer::Refused(status) => (Verdict::Pass, format!("{status}: an error page, no redirect")),
            Answer::Redirected { to, .. } if to == redirect => {
                (Verdict::Pass, "sent back to the registered redirect URI only".into())
            }
            Answer::Redirected { to, .. } | Answer::SignIn(to) => (
                Verdict::Warn,
                format!("asked a person to sign in first ({to}): not seen whether it would send the code there"),
            ),
            Answer::Other => (Verdict::Fail, format!("an error page (4xx) expected\n{}", e.show())),
        },
        Err(e) => (Verdict::Fail, e),
    };
    c.record("authorize.redirect_uri", REDIRECT_EXACT, verdict, detail);

    let Some(person) = person else {
        return skip_all(c, &PERSON_CHECKS, "needs a person to sign in and approve (--sign-in)");
    };
    // Two codes, each approved by the person: one spent on a wrong code_verifier (a server may
    // use a code up when it refuses it), one exchanged. The browser that brings the first back
    // is sent on to the second request, so the person signs in once.
    let (wrong_verifier_code, (verifier, code)) = {
        let (_, challenge_a) = pkce();
        let (verifier_b, challenge_b) = pkce();
        let (state_a, state_b) = (random(12), random(12));
        let url_a =
            request(&[("state", &state_a), ("code_challenge", &challenge_a), ("code_challenge_method", "S256")]);
        let url_b =
            request(&[("state", &state_b), ("code_challenge", &challenge_b), ("code_challenge_method", "S256")]);
        (person.open)(&url_a);
        let first = callback(&listener, person.within, Reply::SendTo(&url_b)).await;
        let first = match first.and_then(|params| code_of(&params, &state_a, endpoints)) {
            Ok(code) => code,
            Err(why) => {
                c.record("authorize.code", CODE, Verdict::Fail, format!("sent: GET {url_a}\n{why}"));
                return skip_all(c, &PERSON_CHECKS[1..], "no code");
            }
        };
        let second = callback(&listener, person.within, Reply::Done).await;
        match second.and_then(|params| code_of(&params, &state_b, endpoints)) {
            Ok(code) => {
                let iss = if endpoints.iss_parameter { ", iss the issuer" } else { "" };
                c.check("authorize.code", CODE, Ok(format!("302 to the redirect URI with a code, the state{iss}")));
                (first, (verifier_b, code))
            }
            Err(why) => {
                c.record("authorize.code", CODE, Verdict::Fail, format!("sent: GET {url_b}\n{why}"));
                return skip_all(c, &PERSON_CHECKS[1..], "no code");
            }
        }
    };

    let http = c.http.clone();
    let exchange = |code: &str, verifier: &str| {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &redirect),
            ("client_id", &client_id),
            ("code_verifier", verifier),
        ];
        let sent = format!(
            "POST {token} grant_type=authorization_code&code=<the code>&redirect_uri={redirect}&client_id={client_id}&code_verifier=<{}>",
            if verifier.is_empty() { "none" } else { "a verifier" }
        );
        (http.post(token).form(&form), sent)
    };
    let (request_wrong, sent) = exchange(&wrong_verifier_code, &random(32));
    let result = match c.send(request_wrong, sent).await {
        Ok(e) if e.status == 400 && e.error() == "invalid_grant" => Ok("400 invalid_grant".into()),
        Ok(e) => Err(format!("400 invalid_grant expected for a code_verifier that does not match\n{}", e.show())),
        Err(e) => Err(e),
    };
    c.check("token.pkce_verifier", VERIFIER, result);

    let (request_right, sent) = exchange(&code, &verifier);
    let issued = match c.send(request_right, sent.clone()).await {
        Ok(e) if e.status == 200 && e.json().is_some_and(|v| v["access_token"].is_string()) => e,
        Ok(e) => {
            c.check("token.code_exchange", EXCHANGE, Err(e.show()));
            return skip_all(c, &PERSON_CHECKS[3..], "the code was not exchanged");
        }
        Err(e) => {
            c.check("token.code_exchange", EXCHANGE, Err(e));
            return skip_all(c, &PERSON_CHECKS[3..], "the code was not exchanged");
        }
    };
    let tokens = issued.json().unwrap_or_default();
    let refresh = tokens["refresh_token"].as_str().map(str::to_owned);
    c.check(
        "token.code_exchange",
        EXCHANGE,
        Ok(format!("200 with an access token{}", if refresh.is_some() { " and a refresh token" } else { "" })),
    );

    // Rotation before the replay: a server that revokes what a replayed code gave (RFC 6749
    // §4.1.2 says it should) ends the refresh token too.
    match refresh {
        Some(first) => {
            let result = check_rotation(c, token, &client_id, &first).await;
            c.check("token.refresh_rotation", ROTATION, result);
        }
        None => c.skip("token.refresh_rotation", ROTATION, "no refresh token was issued with the code"),
    }

    let (replay, sent) = exchange(&code, &verifier);
    let result = match c.send(replay, format!("{sent} (a second time)")).await {
        Ok(e) if e.status == 400 && e.error() == "invalid_grant" => Ok("400 invalid_grant".into()),
        Ok(e) => Err(format!("400 invalid_grant expected for a code used before\n{}", e.show())),
        Err(e) => Err(e),
    };
    c.check("token.code_replay", REPLAY, result);
}

/// A public client's refresh token: a new one comes with each refresh, and the old one is then
/// refused (RFC 9700 §4.14.2).
async fn check_rotation(c: &Checker, token: &str, client_id: &str, first: &str) -> Result<String, String> {
    let refresh = |refresh_token: &str| {
        let form = [("grant_type", "refresh_token"), ("refresh_token", refresh_token), ("client_id", client_id)];
        c.http.post(token).form(&form)
    };
    let sent = format!("POST {token} grant_type=refresh_token&refresh_token=<the refresh token>&client_id={client_id}");
    let e = c.send(refresh(first), sent.clone()).await?;
    if e.status != 200 {
        return Err(format!("200 with a new refresh token expected\n{}", e.show()));
    }
    match e.json().and_then(|v| v["refresh_token"].as_str().map(str::to_owned)) {
        Some(second) if second != first => {}
        _ => return Err(format!("the refresh token was not rotated (a public client's must be)\n{}", e.show())),
    }
    let e = c.send(refresh(first), format!("{sent} (the one rotated out)")).await?;
    if e.status == 400 && e.error() == "invalid_grant" {
        Ok("200 with a new refresh token; the old one then 400 invalid_grant".into())
    } else {
        Err(format!("400 invalid_grant expected for a refresh token rotated out\n{}", e.show()))
    }
}

/// Registers the public client (token_endpoint_auth_method none) the flow is checked with.
async fn register_public(c: &Checker, url: &str, iat: Option<&str>, redirect: &str) -> Result<String, String> {
    let body = json!({
        "client_name": format!("nmos-auth check {} (public)", now()),
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "redirect_uris": [redirect],
        "token_endpoint_auth_method": "none",
        "scope": "registration",
    });
    let mut request = c.http.post(url).json(&body);
    if let Some(iat) = iat {
        request = request.bearer_auth(iat);
    }
    match c.send(request, format!("POST {url} {body}")).await {
        Ok(e) if e.status == 201 => match e.json().and_then(|v| v["client_id"].as_str().map(str::to_owned)) {
            Some(id) => Ok(id),
            None => Err(format!("a public client was registered without a client_id\n{}", e.show())),
        },
        Ok(e) if iat.is_none() && matches!(e.status, 401 | 403) => {
            Err("registering a public client needs an initial access token: give --initial-access-token".into())
        }
        Ok(e) => Err(format!("a public client could not be registered\n{}", e.show())),
        Err(e) => Err(e),
    }
}

/// GETs an authorization request that must fail, and judges where the browser is sent: back to
/// the client with `invalid_request` and the state (RFC 6749 §4.1.2.1) passes.
async fn refused_at_client(c: &Checker, url: &str, redirect: &str, state: &str, what: &str) -> (Verdict, String) {
    let e = match c.get(url).await {
        Ok(e) => e,
        Err(e) => return (Verdict::Fail, e),
    };
    match answer(&e, url) {
        Answer::Redirected { to, params } if to == redirect => {
            let error = param(&params, "error").unwrap_or_default();
            if error != "invalid_request" {
                (Verdict::Fail, format!("{what}: error=invalid_request expected at the redirect URI\n{}", e.show()))
            } else if param(&params, "state") != Some(state) {
                (Verdict::Fail, format!("the error redirect does not carry the request's state\n{}", e.show()))
            } else {
                (Verdict::Pass, "302 to the redirect URI with error=invalid_request and the state".into())
            }
        }
        Answer::Refused(status) => (
            Verdict::Warn,
            format!("{what}: refused with an error page ({status}) rather than sent back to the client with the error"),
        ),
        Answer::Redirected { to, .. } | Answer::SignIn(to) => (
            Verdict::Warn,
            format!("{what}: the server asks a person to sign in first ({to}), so whether it refuses is not seen here"),
        ),
        Answer::Other => (Verdict::Fail, format!("{what}: refused expected\n{}", e.show())),
    }
}

/// The code of a callback's query, checked against the request's state and the issuer.
fn code_of(params: &[(String, String)], state: &str, endpoints: &Endpoints<'_>) -> Result<String, String> {
    let shown = || params.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("&");
    if let Some(error) = param(params, "error") {
        return Err(format!("the server sent back error={error}: {}", shown()));
    }
    let Some(code) = param(params, "code") else {
        return Err(format!("the redirect carries no code: {}", shown()));
    };
    if param(params, "state") != Some(state) {
        return Err(format!("the redirect does not carry the request's state: {}", shown()));
    }
    if endpoints.iss_parameter && param(params, "iss") != Some(endpoints.issuer) {
        return Err(format!("iss is not the issuer {} (RFC 9207 §2.4): {}", endpoints.issuer, shown()));
    }
    Ok(code.to_owned())
}

/// What the checker's callback answers the browser.
enum Reply<'a> {
    /// Sends the browser on to the next authorization request.
    SendTo(&'a str),
    /// A page that says the checker has what it needs.
    Done,
}

/// Waits for the browser to come back to the redirect URI; returns the query it brought.
async fn callback(listener: &TcpListener, within: Duration, reply: Reply<'_>) -> Result<Vec<(String, String)>, String> {
    let wait = async {
        loop {
            let (mut stream, _) = listener.accept().await.map_err(|e| format!("the callback listener failed: {e}"))?;
            // Anything but the callback (a browser's favicon request) gets a 404.
            match read_target(&mut stream).await {
                Some(target) if target.starts_with("/callback") => {
                    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
                    let params: Vec<(String, String)> =
                        url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
                    let answer = match reply {
                        Reply::SendTo(next) => format!(
                            "HTTP/1.1 302 Found\r\nLocation: {next}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        ),
                        Reply::Done => {
                            let page = "<!doctype html><title>nmos-auth check</title><p>The checker has what it needs; this page can be closed.</p>";
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                                page.len()
                            )
                        }
                    };
                    let _ = stream.write_all(answer.as_bytes()).await;
                    return Ok(params);
                }
                _ => {
                    let _ = stream
                        .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .await;
                }
            }
        }
    };
    match tokio::time::timeout(within, wait).await {
        Ok(result) => result,
        Err(_) => Err(format!("nobody came back to the redirect URI within {} s", within.as_secs())),
    }
}

/// The request target of an HTTP/1.1 request (`GET /callback?code=... HTTP/1.1`).
async fn read_target(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await.ok()?.ok()?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head).lines().next()?.to_owned();
    let mut parts = line.split(' ');
    (parts.next() == Some("GET")).then(|| parts.next().map(str::to_owned))?
}
