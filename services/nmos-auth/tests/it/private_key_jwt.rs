//! private_key_jwt (RFC 7523) as an NMOS Node does it (nmos-cpp: RS256, kid "1", its keys at
//! its own jwks_uri over https), and the ways an assertion can be wrong.
use std::process::{Child, Command, Stdio};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::harness::{Backend, ExpectJson, TempDir, TestApp, assert_oauth_error, backend_tests, free_listener};

backend_tests!(node_authenticates_with_a_signed_assertion);

pub(crate) const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An RSA key as a Node holds it: the signing key and its public JWK.
pub(crate) struct NodeKey {
    pub(crate) encoding: EncodingKey,
    pub(crate) jwk: Value,
}

pub(crate) fn node_key(kid: &str, alg: &str) -> NodeKey {
    let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        STANDARD.encode(pair.as_der().unwrap().as_ref())
    );
    let public = pair.public_key();
    let jwk = json!({
        "kty": "RSA", "use": "sig", "alg": alg, "kid": kid,
        "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
        "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
    });
    NodeKey { encoding: EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(), jwk }
}

/// Serves `dir` over https with Python's http.server (not our code), on a free port.
struct HttpsFiles(Child, u16);

impl HttpsFiles {
    fn start(dir: &std::path::Path, cert: &std::path::Path, key: &std::path::Path) -> HttpsFiles {
        let port = free_listener().local_addr().unwrap().port();
        let script = format!(
            "import http.server, ssl, functools\n\
             h = functools.partial(http.server.SimpleHTTPRequestHandler, directory={dir:?})\n\
             s = http.server.ThreadingHTTPServer(('127.0.0.1', {port}), h)\n\
             c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); c.load_cert_chain({cert:?}, {key:?})\n\
             s.socket = c.wrap_socket(s.socket, server_side=True)\n\
             s.serve_forever()\n",
            dir = dir.display().to_string(),
            cert = cert.display().to_string(),
            key = key.display().to_string(),
        );
        let child =
            Command::new("/usr/bin/python3").args(["-c", &script]).stdout(Stdio::null()).stderr(Stdio::null()).spawn();
        // Owned at once, so that it is killed however this ends.
        let server = HttpsFiles(child.unwrap(), port);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the https file server did not start");
    }
}

impl Drop for HttpsFiles {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn sign(key: &EncodingKey, alg: Algorithm, kid: &str, claims: &Value) -> String {
    let header = Header { kid: Some(kid.to_owned()), ..Header::new(alg) };
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

async fn node_authenticates_with_a_signed_assertion(backend: Backend) {
    // The Node's https server, with a certificate the authorization server is told to trust.
    let files = TempDir::new("node-jwks");
    let (cert, tls_key) = crate::harness::server_certificate(files.path(), "node.local", "IP:127.0.0.1");
    let key = node_key("1", "RS256");
    std::fs::write(files.path().join("jwks.json"), json!({"keys": [key.jwk]}).to_string()).unwrap();
    let server = HttpsFiles::start(files.path(), &cert, &tls_key);
    let jwks_uri = format!("https://127.0.0.1:{}/jwks.json", server.1);

    let app = TestApp::spawn_with(backend, |c| c.jwks_ca_bundle = Some(cert.clone())).await;
    let metadata = app.get_json(&app.url("/.well-known/oauth-authorization-server")).await;
    assert!(metadata["token_endpoint_auth_methods_supported"].as_array().unwrap().contains(&json!("private_key_jwt")));
    assert!(metadata["token_endpoint_auth_signing_alg_values_supported"].as_array().unwrap().contains(&json!("RS256")));
    let token_endpoint = metadata["token_endpoint"].as_str().unwrap().to_owned();

    let registered = app
        .register(json!({"client_name": "ACME Node", "grant_types": ["client_credentials"], "response_types": ["none"],
                          "scope": "registration", "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": jwks_uri}))
        .await;
    assert!(registered.get("client_secret").is_none(), "a private_key_jwt client needs no secret");
    assert_eq!(registered["jwks_uri"], jwks_uri.as_str());
    let client_id = registered["client_id"].as_str().unwrap().to_owned();

    let now = nmos_auth_core::now_unix();
    let claims = |aud: &str, exp: i64, jti: &str| json!({"iss": client_id, "sub": client_id, "aud": aud, "iat": now, "exp": exp, "jti": jti});
    let ask = |assertion: String| {
        let form = vec![
            ("grant_type".to_owned(), "client_credentials".to_owned()),
            ("scope".to_owned(), "registration".to_owned()),
            ("client_id".to_owned(), client_id.clone()),
            ("client_assertion_type".to_owned(), ASSERTION_TYPE.to_owned()),
            ("client_assertion".to_owned(), assertion),
        ];
        app.http.post(&token_endpoint).form(&form).send()
    };

    // What nmos-cpp sends: RS256, kid "1", aud the token endpoint as a single string, exp in 30 s.
    let good = sign(&key.encoding, Algorithm::RS256, "1", &claims(&token_endpoint, now + 30, "jti-1"));
    let tokens = ask(good.clone()).await.unwrap().expect_json(200).await;
    let verified = app.verified_claims(&tokens).await;
    assert_eq!(verified["sub"], client_id.as_str());
    assert_eq!(verified["x-nmos-registration"], json!({"read": ["*"], "write": ["*"]}));

    // An assertion just past its exp still passes within the clock leeway (30 s), and is
    // still single-use then: its jti is kept until the leeway is over too (RFC 7523 §3 item 7).
    let late = sign(&key.encoding, Algorithm::RS256, "1", &claims(&token_endpoint, now - 10, "jti-late"));
    ask(late.clone()).await.unwrap().expect_json(200).await;
    let body = ask(late).await.unwrap().expect_json(401).await;
    assert_eq!(body["error"], "invalid_client", "replayed within the leeway: {body}");

    // Every way an assertion can be wrong is invalid_client.
    let other = node_key("1", "RS256");
    let hs = EncodingKey::from_secret(b"a shared secret is not a private key").unwrap();
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims(&token_endpoint, now + 30, "jti-none").to_string())
    );
    let bad = [
        ("replayed jti", good),
        (
            "wrong aud",
            sign(&key.encoding, Algorithm::RS256, "1", &claims("https://elsewhere.example/token", now + 30, "jti-2")),
        ),
        ("expired", sign(&key.encoding, Algorithm::RS256, "1", &claims(&token_endpoint, now - 120, "jti-3"))),
        ("too long", sign(&key.encoding, Algorithm::RS256, "1", &claims(&token_endpoint, now + 3600, "jti-4"))),
        ("unknown kid", sign(&key.encoding, Algorithm::RS256, "2", &claims(&token_endpoint, now + 30, "jti-5"))),
        (
            "another client's key",
            sign(&other.encoding, Algorithm::RS256, "1", &claims(&token_endpoint, now + 30, "jti-6")),
        ),
        (
            "not valid before a minute from now (RFC 7523 §3 item 6)",
            sign(
                &key.encoding,
                Algorithm::RS256,
                "1",
                &json!({"iss": client_id, "sub": client_id, "aud": token_endpoint, "nbf": now + 60, "exp": now + 90,
                        "jti": "jti-nbf"}),
            ),
        ),
        ("alg none", none),
        ("HMAC", sign(&hs, Algorithm::HS256, "1", &claims(&token_endpoint, now + 30, "jti-7"))),
        (
            "no jti",
            sign(
                &key.encoding,
                Algorithm::RS256,
                "1",
                &json!({"iss": client_id, "sub": client_id, "aud": token_endpoint, "exp": now + 30}),
            ),
        ),
    ];
    for (why, assertion) in bad {
        let body = ask(assertion).await.unwrap().expect_json(401).await;
        assert_eq!(body["error"], "invalid_client", "{why}: {body}");
    }
    // Naming the client without any proof is not enough (only public clients may do that).
    let r = app
        .http
        .post(&token_endpoint)
        .form(&[("grant_type", "client_credentials"), ("scope", "registration"), ("client_id", client_id.as_str())])
        .send()
        .await
        .unwrap();
    assert_oauth_error(r, 401, "invalid_client").await;
    // A wrong assertion type is a malformed request.
    let r = app
        .http
        .post(&token_endpoint)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", "urn:bogus"),
            ("client_assertion", "x"),
        ])
        .send()
        .await
        .unwrap();
    assert_oauth_error(r, 400, "invalid_request").await;

    // Keys may also be registered inline; the client id then comes from the assertion itself.
    let inline = node_key("k2", "RS512");
    let registered = app
        .register(json!({"client_name": "Inline Node", "grant_types": ["client_credentials"], "scope": "registration",
                          "token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [inline.jwk]}}))
        .await;
    let inline_id = registered["client_id"].as_str().unwrap();
    let assertion = sign(
        &inline.encoding,
        Algorithm::RS512,
        "k2",
        &json!({"iss": inline_id, "sub": inline_id, "aud": app.issuer(), "exp": now + 60, "jti": "inline-1"}),
    );
    // With no client_id: the assertion says which client it is.
    let ask_inline = |assertion: String| {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &assertion),
        ];
        app.http.post(&token_endpoint).form(&form).send()
    };
    let r = ask_inline(assertion).await.unwrap();
    assert_eq!(r.status(), 200, "the issuer is an accepted audience too");

    // The key says it is for RS512 (its JWK's "alg"): an RS256 signature made with it does not count.
    let assertion = sign(
        &inline.encoding,
        Algorithm::RS256,
        "k2",
        &json!({"iss": inline_id, "sub": inline_id, "aud": app.issuer(), "exp": now + 60, "jti": "inline-2"}),
    );
    assert_oauth_error(ask_inline(assertion).await.unwrap(), 401, "invalid_client").await;

    // Without a valid assertion nobody learns how a client authenticates or that it is disabled.
    let unproved = |id: &str, jti: &str| {
        let claims = json!({"iss": id, "sub": id, "aud": app.issuer(), "exp": now + 60, "jti": jti});
        sign(&other.encoding, Algorithm::RS256, "1", &claims)
    };
    let secret_client = app.machine_client("registration").await;
    let body = ask_inline(unproved(&secret_client.0, "unproved-1")).await.unwrap().expect_json(401).await;
    assert_eq!(body["error_description"], "client authentication failed", "{body}");
    app.server.clients.set_disabled(inline_id, true, "operator:test").await.unwrap();
    let body = ask_inline(unproved(inline_id, "unproved-2")).await.unwrap().expect_json(401).await;
    assert_eq!(body["error"], "invalid_client", "{body}");
    assert!(!body.to_string().contains("disabled"), "{body}");
    // The client itself, proved, is told.
    let proved = json!({"iss": inline_id, "sub": inline_id, "aud": app.issuer(), "exp": now + 60, "jti": "inline-3"});
    let body =
        ask_inline(sign(&inline.encoding, Algorithm::RS512, "k2", &proved)).await.unwrap().expect_json(401).await;
    assert!(body["error_description"].as_str().unwrap().contains("disabled"), "{body}");
    drop(server);
}
