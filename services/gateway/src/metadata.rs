//! Discovery documents: the NMOS API indexes, RFC 8414 metadata and the JWK Set.
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use nmos_auth_core::OAuthError;
use nmos_auth_core::config::LegacyGrants;
use nmos_auth_core::grpc;
use nmos_auth_proto::GetJwksRequest;
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

/// The algorithms accepted for private_key_jwt client assertions.
const ASSERTION_ALGORITHMS: [&str; 5] = ["RS256", "RS384", "RS512", "PS256", "ES256"];

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
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
        "revocation_endpoint": format!("{issuer}/revoke"),
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "revocation_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
        "introspection_endpoint": format!("{issuer}/introspect"),
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "introspection_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
        "code_challenge_methods_supported": ["S256", "plain"],
    })
}

pub async fn metadata(State(gateway): State<Gateway>) -> Json<Value> {
    Json(gateway.metadata.as_ref().clone())
}

pub async fn jwks(State(gateway): State<Gateway>) -> Response {
    match grpc::idempotent(&gateway.keys, |mut keys| async move { keys.get_jwks(GetJwksRequest {}).await }).await {
        Ok(response) => {
            let keys: Vec<Value> = response
                .into_inner()
                .keys
                .into_iter()
                .map(|k| json!({"kty": k.kty, "use": k.r#use, "alg": k.alg, "kid": k.kid, "n": k.n, "e": k.e}))
                .collect();
            Json(json!({"keys": keys})).into_response()
        }
        Err(status) => OAuthErrorResponse::from(OAuthError::from_status(&status)).into_response(),
    }
}
