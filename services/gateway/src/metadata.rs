//! Discovery documents: the NMOS API indexes, RFC 8414 metadata, the JWK Set and the keys'
//! certificates.
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nmos_auth_core::OAuthError;
use nmos_auth_core::capabilities::{
    ASSERTION_ALGORITHMS, CLIENT_AUTH_METHODS, INTROSPECTION_AUTH_METHODS, PKCE_METHODS,
};
use nmos_auth_core::config::LegacyGrants;
use nmos_auth_core::grpc;
use nmos_auth_proto::{GetJwksRequest, GetJwksResponse};
use serde_json::{Value, json};

use crate::Gateway;
use crate::http::OAuthErrorResponse;

pub async fn root() -> Json<Value> {
    Json(json!(["x-nmos/"]))
}

pub async fn x_nmos() -> Json<Value> {
    Json(json!(["auth/"]))
}

pub async fn auth() -> Json<Value> {
    Json(json!(["v1.0/"]))
}

pub async fn auth_version() -> Json<Value> {
    Json(json!(["authorize/", "introspect/", "jwks/", "register/", "revoke/", "token/"]))
}

/// The RFC 8414 document; every field is computed once at start-up.
pub fn authorization_server_metadata(issuer: &str, scopes: &str, legacy: LegacyGrants) -> Value {
    // Exactly the grants that are on.
    let mut grant_types = vec!["authorization_code", "refresh_token", "client_credentials"];
    let mut response_types = vec!["code"];
    if legacy.password {
        grant_types.push("password");
    }
    if legacy.implicit {
        grant_types.push("implicit");
        response_types.push("token");
    }
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "registration_endpoint": format!("{issuer}/register"),
        "scopes_supported": scopes.split(' ').collect::<Vec<_>>(),
        "response_types_supported": response_types,
        "grant_types_supported": grant_types,
        "token_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
        "revocation_endpoint": format!("{issuer}/revoke"),
        "revocation_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "revocation_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
        "introspection_endpoint": format!("{issuer}/introspect"),
        "introspection_endpoint_auth_methods_supported": INTROSPECTION_AUTH_METHODS,
        "introspection_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
        "code_challenge_methods_supported": PKCE_METHODS,
        // RFC 9207: every authorization response carries `iss`.
        "authorization_response_iss_parameter_supported": true,
    })
}

pub async fn metadata(State(gateway): State<Gateway>) -> Json<Value> {
    Json(gateway.metadata.as_ref().clone())
}

async fn get_jwks(gateway: &Gateway, document_only: bool) -> Result<GetJwksResponse, Response> {
    let request = GetJwksRequest { document_only };
    match grpc::idempotent(&gateway.keys, |mut keys| async move { keys.get_jwks(request).await }).await {
        Ok(response) => Ok(response.into_inner()),
        Err(status) => Err(OAuthErrorResponse::from(OAuthError::from_status(&status)).into_response()),
    }
}

/// A document that changes when the key set does: cached briefly (a removed key must
/// disappear from resource servers' caches promptly), with an ETag for cheap re-validation.
fn cacheable(headers: &HeaderMap, document: Vec<u8>, etag: &str) -> Response {
    let cache = [
        (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=60")),
        (header::ETAG, HeaderValue::from_str(etag).unwrap_or(HeaderValue::from_static("\"\""))),
    ];
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matches {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    (cache, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], document).into_response()
}

/// The JWKS as the keys service prepared it when the key set last changed: no JSON is built and
/// nothing hashed per request.
pub async fn jwks(State(gateway): State<Gateway>, headers: HeaderMap) -> Response {
    match get_jwks(&gateway, true).await {
        Ok(jwks) => cacheable(&headers, jwks.document, &jwks.etag),
        Err(response) => response,
    }
}

/// The published keys' certificates as a JSON array of PEM strings (the seed's `certs` route).
pub async fn certs(State(gateway): State<Gateway>, headers: HeaderMap) -> Response {
    let keys = match get_jwks(&gateway, false).await {
        Ok(jwks) => jwks.keys,
        Err(response) => return response,
    };
    let pems: Vec<String> = keys
        .iter()
        .filter_map(|k| k.x5c.first())
        .map(|der| {
            let lines: Vec<&str> = der.as_bytes().chunks(64).filter_map(|c| std::str::from_utf8(c).ok()).collect();
            format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n"))
        })
        .collect();
    let document = json!(pems).to_string().into_bytes();
    let etag = nmos_auth_core::etag(&document);
    cacheable(&headers, document, &etag)
}
