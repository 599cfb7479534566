//! A token request as the token endpoint received it: form parameters and client authentication.
use std::collections::HashMap;

use nmos_auth_core::{ErrorCode, OAuthError};
use nmos_auth_proto as pb;

/// The form parameters, each at most once (RFC 6749 §3.1, §3.2).
pub struct Params(HashMap<String, String>);

impl Params {
    pub fn parse(params: Vec<pb::TokenParam>) -> Result<Params, OAuthError> {
        let mut map = HashMap::with_capacity(params.len());
        for p in params {
            if map.contains_key(&p.name) {
                return Err(OAuthError::new(
                    ErrorCode::InvalidRequest,
                    format!("the parameter {} is repeated", p.name),
                ));
            }
            map.insert(p.name, p.value);
        }
        Ok(Params(map))
    }

    /// A parameter; an empty value counts as absent (RFC 6749 §3.1).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }
}

/// RFC 7521 §4.2: the only client assertion type accepted.
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The client's claim of identity, before the registry checks it.
pub enum ClientAuth {
    Basic {
        client_id: String,
        client_secret: String,
    },
    /// client_secret_post: the credentials in the body.
    Post {
        client_id: String,
        client_secret: String,
    },
    /// private_key_jwt: an RFC 7523 assertion; the client_id may come from the assertion.
    Assertion {
        client_id: String,
        assertion: String,
    },
    /// No credentials: a public client naming itself with `client_id`.
    Public {
        client_id: String,
    },
}

impl ClientAuth {
    pub fn from_request(auth: Option<pb::ClientAuthentication>, params: &Params) -> Result<ClientAuth, OAuthError> {
        let invalid_client = |why: &str| OAuthError::new(ErrorCode::InvalidClient, why);
        let method = auth.and_then(|a| a.method);
        // RFC 6749 §2.3: one authentication method per request.
        let two_methods =
            || OAuthError::new(ErrorCode::InvalidRequest, "use one client authentication method, not two");
        match (params.get("client_assertion"), params.get("client_assertion_type")) {
            (Some(assertion), Some(ASSERTION_TYPE)) => {
                let basic = matches!(method, Some(pb::client_authentication::Method::Basic(_)));
                if basic || params.get("client_secret").is_some() {
                    return Err(two_methods());
                }
                let client_id = params.get("client_id").unwrap_or_default().to_owned();
                return Ok(ClientAuth::Assertion { client_id, assertion: assertion.to_owned() });
            }
            (None, None) => {}
            _ => {
                return Err(OAuthError::new(
                    ErrorCode::InvalidRequest,
                    format!("client_assertion needs client_assertion_type {ASSERTION_TYPE}"),
                ));
            }
        }
        if let Some(secret) = params.get("client_secret") {
            // RFC 6749 §2.3: one authentication method per request.
            if matches!(method, Some(pb::client_authentication::Method::Basic(_))) {
                return Err(two_methods());
            }
            let client_id = params.get("client_id").ok_or_else(|| invalid_client("client_id is required"))?;
            return Ok(ClientAuth::Post { client_id: client_id.to_owned(), client_secret: secret.to_owned() });
        }
        match method {
            Some(pb::client_authentication::Method::Basic(basic)) => {
                if params.get("client_id").is_some_and(|id| id != basic.client_id) {
                    return Err(OAuthError::new(
                        ErrorCode::InvalidRequest,
                        "client_id differs from the client authenticated with HTTP Basic",
                    ));
                }
                Ok(ClientAuth::Basic { client_id: basic.client_id, client_secret: basic.client_secret })
            }
            Some(pb::client_authentication::Method::None(_)) | None => match params.get("client_id") {
                Some(id) => Ok(ClientAuth::Public { client_id: id.to_owned() }),
                None => Err(invalid_client("client authentication is required")),
            },
        }
    }

    pub fn into_proto(self) -> pb::AuthenticateClientRequest {
        use pb::authenticate_client_request::Credential;
        match self {
            ClientAuth::Basic { client_id, client_secret } => pb::AuthenticateClientRequest {
                client_id,
                credential: Some(Credential::ClientSecretBasic(client_secret)),
            },
            ClientAuth::Post { client_id, client_secret } => pb::AuthenticateClientRequest {
                client_id,
                credential: Some(Credential::ClientSecretPost(client_secret)),
            },
            ClientAuth::Assertion { client_id, assertion } => {
                pb::AuthenticateClientRequest { client_id, credential: Some(Credential::PrivateKeyJwt(assertion)) }
            }
            ClientAuth::Public { client_id } => {
                pb::AuthenticateClientRequest { client_id, credential: Some(Credential::None(true)) }
            }
        }
    }
}
