//! The OAuth endpoints: token (RFC 6749), registration (RFC 7591) and client configuration
//! (RFC 7592). Each turns HTTP into a
//! gRPC call and the result back into HTTP; the rules live in the services.
use axum::Json;
use axum::body::Bytes;
use std::net::SocketAddr;

use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nmos_auth_core::{ErrorCode, OAuthError};
use nmos_auth_proto as pb;
use serde_json::{Value, json};

use crate::Gateway;
use crate::http::{
    Authorization, OAuthErrorResponse, authorization, body, content_type, no_store, parse_form, parse_multipart,
};

const BASIC_CHALLENGE: &str = "Basic realm=\"nmos-auth\"";

fn invalid_request(description: &str) -> OAuthErrorResponse {
    OAuthError::new(ErrorCode::InvalidRequest, description).into()
}

/// The client's credentials from the Authorization header (RFC 6749 §2.3.1), or none.
fn client_authentication(headers: &HeaderMap) -> Result<pb::ClientAuthentication, OAuthErrorResponse> {
    let method = match authorization(headers) {
        Authorization::Absent => pb::client_authentication::Method::None(pb::NoClientAuthentication {}),
        Authorization::Basic { user, password } => {
            pb::client_authentication::Method::Basic(pb::BasicCredentials { client_id: user, client_secret: password })
        }
        Authorization::Bearer(_) | Authorization::Garbled => {
            return Err(OAuthErrorResponse::with_challenge(
                OAuthError::new(ErrorCode::InvalidClient, "use HTTP Basic client authentication"),
                Some(BASIC_CHALLENGE.into()),
            ));
        }
    };
    Ok(pb::ClientAuthentication { method: Some(method) })
}

/// A token, revocation or introspection request's form body, strictly parsed. (The
/// multipart/form-data that `curl -F` sends is accepted too, for the seed's documented examples.)
fn form_body(
    headers: &HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Vec<pb::TokenParam>, OAuthErrorResponse> {
    let bytes = body(bytes, ErrorCode::InvalidRequest)?;
    let params = match content_type(headers).as_deref() {
        Some("application/x-www-form-urlencoded") => parse_form(&bytes),
        Some("multipart/form-data") => {
            let full = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
            parse_multipart(full, &bytes)
        }
        _ => return Err(invalid_request("the body must be application/x-www-form-urlencoded")),
    };
    let params = params.ok_or_else(|| invalid_request("the body is not valid UTF-8 form data"))?;
    Ok(params.into_iter().map(|(name, value)| pb::TokenParam { name, value }).collect())
}

/// An error from a service, with a Basic challenge for failed client authentication.
fn client_error(status: &tonic::Status) -> OAuthErrorResponse {
    let error = OAuthError::from_status(status);
    let challenge = (error.code == ErrorCode::InvalidClient).then(|| BASIC_CHALLENGE.to_owned());
    OAuthErrorResponse::with_challenge(error, challenge)
}

/// POST revocation_endpoint (RFC 7009): 200 whether or not the token was known.
pub async fn revoke(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response, OAuthErrorResponse> {
    let params = form_body(&headers, bytes)?;
    let client_authentication = Some(client_authentication(&headers)?);
    match gateway.token_issuer.clone().revoke(pb::RevokeRequest { params, client_authentication }).await {
        Ok(_) => Ok((no_store(), Json(json!({}))).into_response()),
        Err(status) => Err(client_error(&status)),
    }
}

/// POST introspection_endpoint (RFC 7662).
pub async fn introspect(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response, OAuthErrorResponse> {
    let params = form_body(&headers, bytes)?;
    let client_authentication = Some(client_authentication(&headers)?);
    match gateway.token_issuer.clone().introspect(pb::IntrospectRequest { params, client_authentication }).await {
        Ok(answer) => {
            let answer: Value = serde_json::from_slice(&answer.into_inner().json)
                .map_err(|e| OAuthErrorResponse::from(OAuthError::internal(e)))?;
            Ok((no_store(), Json(answer)).into_response())
        }
        Err(status) => Err(client_error(&status)),
    }
}

/// POST token_endpoint.
pub async fn token(
    State(gateway): State<Gateway>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response, OAuthErrorResponse> {
    let params = form_body(&headers, bytes)?;
    let request = pb::TokenRequest {
        params,
        client_authentication: Some(client_authentication(&headers)?),
        client_address: gateway.client_address(peer, &headers).to_string(),
    };
    match gateway.token_issuer.clone().token(request).await {
        Ok(response) => {
            let t = response.into_inner();
            let mut body = json!({
                "access_token": t.access_token,
                "token_type": t.token_type,
                "expires_in": t.expires_in,
                "scope": t.scope,
            });
            if !t.refresh_token.is_empty() {
                body["refresh_token"] = json!(t.refresh_token);
            }
            Ok((no_store(), Json(body)).into_response())
        }
        Err(status) => Err(client_error(&status)),
    }
}

fn client_json(client: pb::Client, secret: String) -> Value {
    let method = match pb::TokenEndpointAuthMethod::try_from(client.token_endpoint_auth_method) {
        Ok(pb::TokenEndpointAuthMethod::None) => "none",
        Ok(pb::TokenEndpointAuthMethod::ClientSecretPost) => "client_secret_post",
        Ok(pb::TokenEndpointAuthMethod::PrivateKeyJwt) => "private_key_jwt",
        _ => "client_secret_basic",
    };
    let mut body = json!({
        "client_id": client.client_id,
        "client_id_issued_at": client.client_id_issued_at,
        "client_name": client.client_name,
        "redirect_uris": client.redirect_uris,
        "grant_types": client.grant_types,
        "response_types": client.response_types,
        "scope": client.scope,
        "token_endpoint_auth_method": method,
    });
    if !secret.is_empty() {
        body["client_secret"] = json!(secret);
        body["client_secret_expires_at"] = json!(client.client_secret_expires_at);
    }
    let optional = [
        ("client_uri", client.client_uri),
        ("logo_uri", client.logo_uri),
        ("software_id", client.software_id),
        ("software_version", client.software_version),
    ];
    for (name, value) in optional {
        if !value.is_empty() {
            body[name] = json!(value);
        }
    }
    if !client.contacts.is_empty() {
        body["contacts"] = json!(client.contacts);
    }
    if !client.jwks_uri.is_empty() {
        body["jwks_uri"] = json!(client.jwks_uri);
    }
    if let Ok(jwks) = serde_json::from_str::<Value>(&client.jwks_json) {
        body["jwks"] = jwks;
    }
    body
}

/// POST registration_endpoint (RFC 7591 §3).
pub async fn register(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response, OAuthErrorResponse> {
    let metadata_error = |d: &str| OAuthErrorResponse::from(OAuthError::new(ErrorCode::InvalidClientMetadata, d));
    let bytes = body(bytes, ErrorCode::InvalidClientMetadata)?;
    let body = match content_type(&headers).as_deref() {
        Some("application/json") => pb::register_client_request::Body::Json(bytes.to_vec()),
        Some("application/x-www-form-urlencoded") => {
            let params = parse_form(&bytes).ok_or_else(|| metadata_error("the body is not valid UTF-8 form data"))?;
            pb::register_client_request::Body::Form(pb::FormBody {
                params: params.into_iter().map(|(name, value)| pb::FormParam { name, value }).collect(),
            })
        }
        _ => return Err(metadata_error("the body must be application/json")),
    };
    let (token, token_sent) = match authorization(&headers) {
        Authorization::Absent => (String::new(), false),
        Authorization::Bearer(token) => (token, true),
        Authorization::Basic { .. } | Authorization::Garbled => {
            return Err(OAuthErrorResponse::with_challenge(
                OAuthError::new(ErrorCode::InvalidToken, "send the initial access token as a Bearer token"),
                Some("Bearer realm=\"nmos-auth\", error=\"invalid_token\"".into()),
            ));
        }
    };
    let request = pb::RegisterClientRequest { body: Some(body), initial_access_token: token, registered_by: None };
    match gateway.clients.clone().register_client(request).await {
        Ok(response) => {
            let r = response.into_inner();
            let token = r.registration_access_token.clone();
            let body = gateway.client_information(r, &token)?;
            Ok((StatusCode::CREATED, no_store(), Json(body)).into_response())
        }
        Err(status) => {
            let error = OAuthError::from_status(&status);
            // RFC 6750 §3.1: no error code in the challenge when no token was sent.
            let challenge = (error.code == ErrorCode::InvalidToken).then(|| {
                if token_sent {
                    "Bearer realm=\"nmos-auth\", error=\"invalid_token\"".to_owned()
                } else {
                    "Bearer realm=\"nmos-auth\"".to_owned()
                }
            });
            Err(OAuthErrorResponse::with_challenge(error, challenge))
        }
    }
}

impl Gateway {
    /// The client information response (RFC 7591 §3.2.1, RFC 7592 §3): the client's metadata,
    /// its new secret if any, and where and with what it manages its registration.
    fn client_information(
        &self,
        reply: pb::RegisterClientResponse,
        registration_access_token: &str,
    ) -> Result<Value, OAuthErrorResponse> {
        let client =
            reply.client.ok_or_else(|| OAuthErrorResponse::from(OAuthError::internal("no client in reply")))?;
        let mut body = client_json(client, reply.client_secret);
        let endpoint = self.metadata["registration_endpoint"].as_str().unwrap_or_default();
        if !registration_access_token.is_empty() {
            body["registration_access_token"] = json!(registration_access_token);
            body["registration_client_uri"] =
                json!(format!("{endpoint}/{}", body["client_id"].as_str().unwrap_or_default()));
        }
        Ok(body)
    }
}

/// The registration access token of an RFC 7592 request (RFC 6750 §2.1), or the 401 for none.
fn registration_access_token(headers: &HeaderMap) -> Result<String, OAuthErrorResponse> {
    match authorization(headers) {
        Authorization::Bearer(token) => Ok(token),
        Authorization::Absent => Err(OAuthErrorResponse::with_challenge(
            OAuthError::new(ErrorCode::InvalidToken, "send the registration access token as a Bearer token"),
            Some("Bearer realm=\"nmos-auth\"".into()),
        )),
        Authorization::Basic { .. } | Authorization::Garbled => Err(configuration_error(&OAuthError::new(
            ErrorCode::InvalidToken,
            "send the registration access token as a Bearer token",
        ))),
    }
}

fn configuration_error(error: &OAuthError) -> OAuthErrorResponse {
    let challenge = (error.code == ErrorCode::InvalidToken)
        .then(|| "Bearer realm=\"nmos-auth\", error=\"invalid_token\"".to_owned());
    OAuthErrorResponse::with_challenge(error.clone(), challenge)
}

/// The client information response of a configuration read or update (RFC 7592 §3).
fn configuration_response(
    gateway: &Gateway,
    token: &str,
    reply: Result<tonic::Response<pb::RegisterClientResponse>, tonic::Status>,
) -> Result<Response, OAuthErrorResponse> {
    let reply = reply.map_err(|status| configuration_error(&OAuthError::from_status(&status)))?.into_inner();
    Ok((no_store(), Json(gateway.client_information(reply, token)?)).into_response())
}

/// GET registration_client_uri (RFC 7592 §2.1).
pub async fn read_client(
    State(gateway): State<Gateway>,
    Path(client_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, OAuthErrorResponse> {
    let token = registration_access_token(&headers)?;
    let request = pb::ClientConfigurationRequest { client_id, registration_access_token: token.clone() };
    let reply = gateway.clients.clone().read_client_configuration(request).await;
    configuration_response(&gateway, &token, reply)
}

/// PUT registration_client_uri (RFC 7592 §2.2): the client's complete metadata, as JSON.
pub async fn update_client(
    State(gateway): State<Gateway>,
    Path(client_id): Path<String>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response, OAuthErrorResponse> {
    let token = registration_access_token(&headers)?;
    let bytes = body(bytes, ErrorCode::InvalidClientMetadata)?;
    if content_type(&headers).as_deref() != Some("application/json") {
        return Err(OAuthError::new(ErrorCode::InvalidClientMetadata, "the body must be application/json").into());
    }
    let request = pb::UpdateClientConfigurationRequest {
        client_id,
        registration_access_token: token.clone(),
        json: bytes.to_vec(),
    };
    let reply = gateway.clients.clone().update_client_configuration(request).await;
    configuration_response(&gateway, &token, reply)
}

/// DELETE registration_client_uri (RFC 7592 §2.3).
pub async fn delete_client(
    State(gateway): State<Gateway>,
    Path(client_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, OAuthErrorResponse> {
    let token = registration_access_token(&headers)?;
    let request = pb::ClientConfigurationRequest { client_id, registration_access_token: token };
    match gateway.clients.clone().delete_client_configuration(request).await {
        Ok(_) => Ok((StatusCode::NO_CONTENT, no_store()).into_response()),
        Err(status) => Err(configuration_error(&OAuthError::from_status(&status))),
    }
}
