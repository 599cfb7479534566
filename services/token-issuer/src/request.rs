//! The token issuer's requests and answers as its domain code sees them (grpc.rs converts
//! them from and to protobuf): form parameters, the client's credentials, and what the
//! authorization endpoint decides.
use std::collections::HashMap;

use nmos_auth_core::{Access, ClientId, ErrorCode, NmosApi, OAuthError, RedirectUri, Scope};
use nmos_auth_proto as pb;

/// The form parameters, each at most once (RFC 6749 §3.1, §3.2).
pub struct Params(HashMap<String, String>);

impl Params {
    /// The parameters as sent, in order; a repeated one is refused.
    pub fn new(params: impl IntoIterator<Item = (String, String)>) -> Result<Params, OAuthError> {
        let mut map = HashMap::new();
        for (name, value) in params {
            if map.contains_key(&name) {
                return Err(OAuthError::new(ErrorCode::InvalidRequest, format!("the parameter {name} is repeated")));
            }
            map.insert(name, value);
        }
        Ok(Params(map))
    }

    /// A parameter; an empty value counts as absent (RFC 6749 §3.1).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }
}

/// HTTP Basic credentials, as the gateway decoded them (RFC 6749 §2.3.1).
pub struct BasicCredentials {
    pub client_id: String,
    pub client_secret: String,
}

/// A request a client makes of the token, revocation or introspection endpoint: its form, and
/// the HTTP Basic credentials it sent, if any.
pub struct ClientRequest {
    pub params: Params,
    pub basic: Option<BasicCredentials>,
}

/// RFC 6749 §5.1: what a successful token request answers.
#[derive(Debug)]
pub struct Tokens {
    pub access_token: String,
    pub expires_in: i64,
    pub scope: String,
    pub refresh_token: Option<String>,
}

/// What the signed-in user decided on the consent page, or a check before it is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Validate the request before anyone has signed in.
    Validate,
    /// Validate the request and say what the user would be asked to approve.
    Check,
    Approve,
    Deny,
}

/// What the user is asked to approve.
#[derive(Debug)]
pub struct Consent {
    pub client_id: ClientId,
    pub client_name: String,
    pub redirect_uri: RedirectUri,
    /// The scope the token would carry: the request's, narrowed to the user's rights.
    pub scope: Scope,
    /// What each API in that scope would allow.
    pub rights: Vec<(NmosApi, Access)>,
    /// Requested APIs the user has no rights to, left out of the token.
    pub withheld: Vec<NmosApi>,
}

/// The authorization endpoint's answer.
#[derive(Debug)]
pub enum Authorized {
    /// Nothing to answer before someone signs in ([`Decision::Validate`]): the user signs in
    /// next. The request is valid, or its error is for a redirect URI that is sent a browser
    /// only once someone signed in.
    SignInNext,
    Consent(Consent),
    /// Where to send the browser: the client's redirect URI with a code, a token or an error.
    Redirect(String),
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
    pub fn from_request(request: &ClientRequest) -> Result<ClientAuth, OAuthError> {
        let invalid_client = |why: &str| OAuthError::new(ErrorCode::InvalidClient, why);
        let (params, basic) = (&request.params, request.basic.as_ref());
        // RFC 6749 §2.3: one authentication method per request.
        let two_methods =
            || OAuthError::new(ErrorCode::InvalidRequest, "use one client authentication method, not two");
        match (params.get("client_assertion"), params.get("client_assertion_type")) {
            (Some(assertion), Some(ASSERTION_TYPE)) => {
                if basic.is_some() || params.get("client_secret").is_some() {
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
            if basic.is_some() {
                return Err(two_methods());
            }
            let client_id = params.get("client_id").ok_or_else(|| invalid_client("client_id is required"))?;
            return Ok(ClientAuth::Post { client_id: client_id.to_owned(), client_secret: secret.to_owned() });
        }
        match basic {
            Some(basic) => {
                if params.get("client_id").is_some_and(|id| id != basic.client_id) {
                    return Err(OAuthError::new(
                        ErrorCode::InvalidRequest,
                        "client_id differs from the client authenticated with HTTP Basic",
                    ));
                }
                Ok(ClientAuth::Basic { client_id: basic.client_id.clone(), client_secret: basic.client_secret.clone() })
            }
            None => match params.get("client_id") {
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
