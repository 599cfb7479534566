//! The HTTP surface every route shares: NMOS indexes, CORS, 404/405 bodies.
use serde_json::json;

use crate::harness::{Backend, ExpectJson, TestApp, backend_tests};

backend_tests!(indexes_cors_and_unknown_paths);

async fn indexes_cors_and_unknown_paths(backend: Backend) {
    let app = TestApp::spawn(backend).await;

    for (path, index) in [
        ("/", json!(["x-nmos/"])),
        ("/x-nmos/", json!(["auth/"])),
        ("/x-nmos/auth/", json!(["v1.0/"])),
        ("/x-nmos/auth/v1.0/", json!(["authorize/", "introspect/", "jwks/", "register/", "revoke/", "token/"])),
    ] {
        let r = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.headers()["access-control-allow-origin"], "*", "{path}");
        assert_eq!(r.expect_json(200).await, index, "{path}");
    }

    // Every route answers a CORS pre-flight without authentication, allowing Authorization.
    let routes = [
        "/",
        "/.well-known/oauth-authorization-server",
        "/.well-known/oauth-authorization-server/x-nmos/auth/v1.0",
        "/x-nmos/auth/v1.0/jwks",
        "/x-nmos/auth/v1.0/token",
        "/x-nmos/auth/v1.0/register",
        "/x-nmos/auth/v1.0/authorize",
        "/x-nmos/auth/v1.0/revoke",
        "/x-nmos/auth/v1.0/signin",
    ];
    for path in routes {
        let r = app
            .http
            .request(reqwest::Method::OPTIONS, app.url(path))
            .header("origin", "https://controller.example.com")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, content-type")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers();
        assert_eq!(h["access-control-allow-origin"], "*", "{path}");
        let allowed = h["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
        assert!(allowed.contains("authorization"), "{path}: {allowed}");
        assert!(h["access-control-allow-methods"].to_str().unwrap().contains("POST"), "{path}");
    }

    // Unknown paths and methods: NMOS error JSON, still with CORS.
    for path in ["/x-nmos/auth/v1.0/nope", "/x-nmos/query/v1.3/nodes", "/elsewhere"] {
        let r = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.headers()["access-control-allow-origin"], "*");
        let body = r.expect_json(404).await;
        assert_eq!(body["code"], 404);
        assert!(body["error"].is_string());
        assert!(body.get("debug").is_some());
    }
    let r = app.http.delete(app.auth_url("jwks")).send().await.unwrap();
    assert_eq!(r.expect_json(405).await["code"], 405);

    // A request that cannot succeed (an unknown client) is refused before anyone signs in, with
    // an error page and no redirect (RFC 6749 §4.1.2.1); a valid one goes to the sign-in page
    // first (authorization_code.rs).
    let mut browser = crate::browser::Browser::new();
    let page = browser.get(&app.auth_url("authorize?response_type=code&client_id=x")).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.content_type.starts_with("text/html"), "{}", page.content_type);
    assert!(page.location.is_none());

    // A form over max_body_bytes (the README promises 413) is a 413 page for people on every
    // page that takes a form, whatever else is wrong with it; never "Form expired".
    let mut browser = crate::browser::Browser::new();
    let form = browser.get(&app.auth_url("signin")).await;
    let oversized = vec![("csrf".to_owned(), form.field("csrf")), ("pad".to_owned(), "a".repeat(18 * 1024))];
    for page in [
        "signin",
        "signup",
        "signout",
        "authorize",
        "register-client",
        "delete-client",
        "pending",
        "users/add",
        "users/change",
    ] {
        let answer = browser.post(&app.auth_url(page), &oversized).await;
        assert_eq!(answer.status, 413, "{page}: {}", answer.body);
        assert!(answer.content_type.starts_with("text/html"), "{page}: {}", answer.content_type);
        assert!(answer.body.contains("too large"), "{page}: {}", answer.body);
    }

    // The JWKS is public and carries no private material.
    let jwks = app.jwks().await;
    let key = jwks["keys"][0].as_object().unwrap();
    let mut members: Vec<&str> = key.keys().map(String::as_str).collect();
    members.sort();
    assert_eq!(members, ["alg", "e", "kid", "kty", "n", "use", "x5c"]);
}
