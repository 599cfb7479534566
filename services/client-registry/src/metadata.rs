//! RFC 7591 client metadata: parsed once, so that registered metadata is always valid.
pub use nmos_auth_core::GrantType;
use nmos_auth_core::config::LegacyGrants;
use nmos_auth_core::{ErrorCode, OAuthError, RedirectUri, Scope};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;

/// A grant type a client may register for: the legacy ones only when they are switched on.
fn grant_type(s: &str, legacy: LegacyGrants) -> Option<GrantType> {
    let on = |g: GrantType| match g {
        GrantType::Password => legacy.password,
        GrantType::Implicit => legacy.implicit,
        _ => true,
    };
    GrantType::parse(s).filter(|g| on(*g))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// Confidential client: HTTP Basic with the issued secret (the default).
    ClientSecretBasic,
    /// Confidential client: the secret in the request body.
    ClientSecretPost,
    /// Confidential client that signs assertions with its own key (RFC 7523).
    PrivateKeyJwt,
    /// Public client: no secret.
    None,
}

impl AuthMethod {
    const ALL: [AuthMethod; 4] =
        [AuthMethod::ClientSecretBasic, AuthMethod::ClientSecretPost, AuthMethod::PrivateKeyJwt, AuthMethod::None];

    /// Whether a client authenticating this way has a secret (kept here only as its digest).
    pub fn has_secret(self) -> bool {
        matches!(self, AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost)
    }

    /// One of `capabilities::CLIENT_AUTH_METHODS`, which the metadata announces.
    pub fn parse(name: &str) -> Option<AuthMethod> {
        AuthMethod::ALL.into_iter().find(|m| m.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
            AuthMethod::None => "none",
        }
    }
}

/// The metadata a client registered, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientMetadata {
    pub client_name: String,
    pub redirect_uris: Vec<RedirectUri>,
    pub grant_types: Vec<GrantType>,
    pub response_types: Vec<String>,
    pub scope: String,
    pub token_endpoint_auth_method: AuthMethod,
    pub client_uri: Option<String>,
    pub logo_uri: Option<String>,
    pub contacts: Vec<String>,
    pub software_id: Option<String>,
    pub software_version: Option<String>,
    /// Where a private_key_jwt client publishes its keys ...
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// ... or its keys, inline (a JWK Set).
    #[serde(default)]
    pub jwks: Option<Value>,
}

/// What a client is, for administrators: a device or service (the client_credentials grant),
/// an application with a secret for people's sign-in, or a public (PKCE) application.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientKind {
    Machine,
    Confidential,
    Public,
}

impl ClientKind {
    pub const ALL: [ClientKind; 3] = [ClientKind::Machine, ClientKind::Confidential, ClientKind::Public];

    /// As stored and searched.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientKind::Machine => "machine",
            ClientKind::Confidential => "confidential",
            ClientKind::Public => "public",
        }
    }
}

impl ClientMetadata {
    pub fn kind(&self) -> ClientKind {
        if self.token_endpoint_auth_method == AuthMethod::None {
            ClientKind::Public
        } else if self.grant_types.contains(&GrantType::ClientCredentials) {
            ClientKind::Machine
        } else {
            ClientKind::Confidential
        }
    }

    /// The name as searched: lower-cased, without control characters (which nobody searches
    /// for, and a Postgres text column cannot hold NUL).
    pub fn search_name(&self) -> String {
        self.client_name.chars().filter(|c| !c.is_control()).flat_map(char::to_lowercase).collect()
    }
}

/// What registration accepts, from the server's configuration.
#[derive(Clone, Copy, Debug)]
pub struct Rules<'a> {
    /// The scopes this server issues.
    pub scopes: &'a Scope,
    pub legacy: LegacyGrants,
    /// This server runs without TLS (as an unsecured nmos-cpp plant does): clients' plain-http
    /// jwks_uri and redirect URIs are accepted; otherwise they must be https (redirect URIs:
    /// or loopback, RFC 8252).
    pub plain_http: bool,
}

const MAX_REDIRECT_URIS: usize = 32;
const MAX_STRING: usize = 2048;
/// Fields that hold lists; in a form body they may repeat or be separated by white space.
const LIST_FIELDS: [&str; 4] = ["redirect_uris", "grant_types", "response_types", "contacts"];

fn metadata_error(description: impl Into<String>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClientMetadata, description)
}

/// Turns an `application/x-www-form-urlencoded` registration into the JSON object it stands for.
pub fn form_to_json(params: &[(String, String)]) -> Value {
    let mut object = Map::new();
    for (name, value) in params {
        if LIST_FIELDS.contains(&name.as_str()) {
            let entry = object.entry(name.clone()).or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(items) = entry {
                items.extend(value.split_whitespace().map(|v| Value::String(v.to_owned())));
            }
        } else {
            object.insert(name.clone(), Value::String(value.clone()));
        }
    }
    Value::Object(object)
}

fn string_field(object: &Map<String, Value>, name: &str) -> Result<Option<String>, OAuthError> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= MAX_STRING => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(metadata_error(format!("{name} is too long"))),
        Some(_) => Err(metadata_error(format!("{name} must be a string"))),
    }
}

fn list_field(object: &Map<String, Value>, name: &str) -> Result<Option<Vec<String>>, OAuthError> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) if s.len() <= MAX_STRING => Ok(s.clone()),
                _ => Err(metadata_error(format!("{name} must be an array of strings"))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(metadata_error(format!("{name} must be an array of strings"))),
    }
}

fn web_url(value: &str, name: &str) -> Result<Url, OAuthError> {
    let url = Url::parse(value).map_err(|_| metadata_error(format!("{name} {value:?} is not an absolute URL")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(metadata_error(format!("{name} {value:?} must be an http or https URL")));
    }
    Ok(url)
}

fn redirect_uri(value: &str, rules: &Rules) -> Result<RedirectUri, OAuthError> {
    RedirectUri::parse(value)
        .and_then(|uri| uri.allowed(rules.plain_http).map(|()| uri))
        .map_err(|why| OAuthError::new(ErrorCode::InvalidRedirectUri, format!("redirect URI {value:?} {why}")))
}

/// Parses and checks registration metadata. Metadata this server does not understand is
/// ignored (RFC 7591 §2).
pub fn parse(body: &Value, rules: &Rules) -> Result<ClientMetadata, OAuthError> {
    let (scopes, legacy) = (rules.scopes, rules.legacy);
    let object = body.as_object().ok_or_else(|| metadata_error("the request body must be a JSON object"))?;

    let grant_types = match list_field(object, "grant_types")? {
        None => vec![GrantType::AuthorizationCode],
        Some(names) if names.is_empty() => {
            return Err(metadata_error("grant_types must not be empty"));
        }
        Some(names) => {
            let mut grants = Vec::new();
            for name in &names {
                let grant = grant_type(name, legacy)
                    .ok_or_else(|| metadata_error(format!("grant type {name:?} is not supported")))?;
                if !grants.contains(&grant) {
                    grants.push(grant);
                }
            }
            grants
        }
    };
    let uses_code = grant_types.contains(&GrantType::AuthorizationCode);
    let uses_implicit = grant_types.contains(&GrantType::Implicit);

    let response_types = match list_field(object, "response_types")? {
        None => {
            let mut types: Vec<String> = Vec::new();
            if uses_code {
                types.push("code".to_owned());
            }
            if uses_implicit {
                types.push("token".to_owned());
            }
            if types.is_empty() {
                types.push("none".to_owned());
            }
            types
        }
        Some(types) => types,
    };
    for t in &response_types {
        let known = t == "code" || t == "none" || (t == "token" && legacy.implicit);
        if !known {
            return Err(metadata_error(format!("response type {t:?} is not supported")));
        }
    }
    if uses_code != response_types.iter().any(|t| t == "code") {
        return Err(metadata_error(
            "the authorization_code grant and the \"code\" response type go together (RFC 7591 §2.1)",
        ));
    }
    if uses_implicit != response_types.iter().any(|t| t == "token") {
        return Err(metadata_error("the implicit grant and the \"token\" response type go together (RFC 7591 §2.1)"));
    }

    let token_endpoint_auth_method = match string_field(object, "token_endpoint_auth_method")?.as_deref() {
        None => AuthMethod::ClientSecretBasic,
        Some(name) => AuthMethod::parse(name).ok_or_else(|| {
            let supported = nmos_auth_core::capabilities::CLIENT_AUTH_METHODS.join(", ");
            metadata_error(format!("token_endpoint_auth_method {name:?} is not supported ({supported})"))
        })?,
    };
    if token_endpoint_auth_method == AuthMethod::None && grant_types.contains(&GrantType::ClientCredentials) {
        return Err(metadata_error("the client_credentials grant is only for confidential clients"));
    }

    let redirect_uris = list_field(object, "redirect_uris")?.unwrap_or_default();
    if redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(metadata_error(format!("at most {MAX_REDIRECT_URIS} redirect_uris")));
    }
    let redirect_uris = redirect_uris.iter().map(|u| redirect_uri(u, rules)).collect::<Result<Vec<_>, _>>()?;
    if (uses_code || uses_implicit) && redirect_uris.is_empty() {
        return Err(OAuthError::new(
            ErrorCode::InvalidRedirectUri,
            "the authorization_code and implicit grants need at least one redirect URI",
        ));
    }

    let scope = match string_field(object, "scope")? {
        None => scopes.clone(),
        Some(s) => {
            let requested = Scope::parse(&s).map_err(|e| metadata_error(e.to_string()))?;
            if !requested.is_subset_of(scopes) {
                return Err(metadata_error(format!("this server issues tokens only for the scopes \"{scopes}\"")));
            }
            requested
        }
    };

    let jwks_uri = string_field(object, "jwks_uri")?;
    if let Some(uri) = &jwks_uri {
        let url = web_url(uri, "jwks_uri")?;
        if url.scheme() != "https" && !rules.plain_http {
            return Err(metadata_error("jwks_uri must be https on a server that uses TLS"));
        }
    }
    let jwks = match object.get("jwks") {
        None | Some(Value::Null) => None,
        Some(set) => {
            serde_json::from_value::<jsonwebtoken::jwk::JwkSet>(set.clone())
                .map_err(|e| metadata_error(format!("jwks is not a JWK Set: {e}")))?;
            Some(set.clone())
        }
    };
    if jwks_uri.is_some() && jwks.is_some() {
        return Err(metadata_error("send jwks_uri or jwks, not both (RFC 7591 §2)"));
    }
    if token_endpoint_auth_method == AuthMethod::PrivateKeyJwt && jwks_uri.is_none() && jwks.is_none() {
        return Err(metadata_error("private_key_jwt needs jwks_uri or jwks"));
    }

    for name in ["client_uri", "logo_uri"] {
        if let Some(url) = string_field(object, name)? {
            web_url(&url, name)?;
        }
    }

    Ok(ClientMetadata {
        client_name: string_field(object, "client_name")?.unwrap_or_default(),
        redirect_uris,
        grant_types,
        response_types,
        scope: scope.to_string(),
        token_endpoint_auth_method,
        client_uri: string_field(object, "client_uri")?,
        logo_uri: string_field(object, "logo_uri")?,
        contacts: list_field(object, "contacts")?.unwrap_or_default(),
        software_id: string_field(object, "software_id")?,
        software_version: string_field(object, "software_version")?,
        jwks_uri,
        jwks,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_announced_authentication_methods_are_the_ones_parsed() {
        let names: Vec<&str> = AuthMethod::ALL.iter().map(|m| m.as_str()).collect();
        assert_eq!(names, nmos_auth_core::capabilities::CLIENT_AUTH_METHODS);
        for name in nmos_auth_core::capabilities::CLIENT_AUTH_METHODS {
            assert_eq!(AuthMethod::parse(name).map(AuthMethod::as_str), Some(name));
        }
        assert_eq!(AuthMethod::parse("client_secret_jwt"), None);
    }

    use super::*;
    use serde_json::json;

    fn scopes() -> Scope {
        Scope::all()
    }

    fn rules(scopes: &Scope, legacy: LegacyGrants) -> Rules<'_> {
        Rules { scopes, legacy, plain_http: false }
    }

    fn code(e: Result<ClientMetadata, OAuthError>) -> &'static str {
        e.unwrap_err().code.as_str()
    }

    #[test]
    fn nmos_cpp_machine_client_is_accepted() {
        let m = parse(
            &json!({"client_name": "", "grant_types": ["client_credentials"], "response_types": ["none"],
                    "scope": "registration", "token_endpoint_auth_method": "client_secret_basic"}),
            &rules(&scopes(), LegacyGrants::default()),
        )
        .unwrap();
        assert_eq!(m.grant_types, vec![GrantType::ClientCredentials]);
        assert_eq!(m.scope, "registration");
    }

    #[test]
    fn defaults_follow_rfc_7591() {
        let m = parse(&json!({"redirect_uris": ["https://c.example/cb"]}), &rules(&scopes(), LegacyGrants::default()))
            .unwrap();
        assert_eq!(m.grant_types, vec![GrantType::AuthorizationCode]);
        assert_eq!(m.response_types, vec!["code"]);
        assert_eq!(m.token_endpoint_auth_method, AuthMethod::ClientSecretBasic);
        assert_eq!(m.scope, Scope::all().to_string());
    }

    #[test]
    fn bad_metadata_is_rejected_with_the_rfc_code() {
        let s = scopes();
        assert_eq!(code(parse(&json!([]), &rules(&s, LegacyGrants::default()))), "invalid_client_metadata");
        assert_eq!(
            code(parse(&json!({"grant_types": ["password"]}), &rules(&s, LegacyGrants::default()))),
            "invalid_client_metadata"
        );
        assert_eq!(
            code(parse(&json!({"grant_types": "client_credentials"}), &rules(&s, LegacyGrants::default()))),
            "invalid_client_metadata"
        );
        assert_eq!(
            code(parse(&json!({"grant_types": ["authorization_code"]}), &rules(&s, LegacyGrants::default()))),
            "invalid_redirect_uri"
        );
        assert_eq!(
            code(parse(&json!({"redirect_uris": ["/relative"]}), &rules(&s, LegacyGrants::default()))),
            "invalid_redirect_uri"
        );
        assert_eq!(
            code(parse(&json!({"redirect_uris": ["https://a.example/cb#x"]}), &rules(&s, LegacyGrants::default()))),
            "invalid_redirect_uri"
        );
        assert_eq!(
            code(parse(&json!({"redirect_uris": ["https://*.example/cb"]}), &rules(&s, LegacyGrants::default()))),
            "invalid_redirect_uri"
        );
        assert_eq!(
            code(parse(
                &json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "none"}),
                &rules(&s, LegacyGrants::default())
            )),
            "invalid_client_metadata"
        );
        assert_eq!(
            code(parse(
                &json!({"grant_types": ["client_credentials"], "scope": "bogus"}),
                &rules(&s, LegacyGrants::default())
            )),
            "invalid_client_metadata"
        );
        assert_eq!(
            code(parse(
                &json!({"grant_types": ["client_credentials"], "scope": "query"}),
                &rules(&Scope::parse("registration").unwrap(), LegacyGrants::default())
            )),
            "invalid_client_metadata"
        );
    }

    #[test]
    fn legacy_grants_only_when_switched_on() {
        let on = LegacyGrants { password: true, implicit: true };
        let body = json!({"grant_types": ["implicit", "password"], "redirect_uris": ["https://c.example/cb"]});
        assert_eq!(code(parse(&body, &rules(&scopes(), LegacyGrants::default()))), "invalid_client_metadata");
        let m = parse(&body, &rules(&scopes(), on)).unwrap();
        assert_eq!(m.response_types, vec!["token"]);
        let no_uri = json!({"grant_types": ["implicit"]});
        assert_eq!(code(parse(&no_uri, &rules(&scopes(), on))), "invalid_redirect_uri");
    }

    #[test]
    fn private_key_jwt_needs_keys() {
        let s = scopes();
        let with = |extra: Value| {
            let mut body =
                json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "private_key_jwt"});
            body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            parse(&body, &rules(&s, LegacyGrants::default()))
        };
        assert_eq!(code(with(json!({}))), "invalid_client_metadata");
        assert_eq!(
            code(with(json!({"jwks_uri": "http://node.example/jwks"}))),
            "invalid_client_metadata",
            "https only"
        );
        assert_eq!(code(with(json!({"jwks": {"keys": "no"}}))), "invalid_client_metadata");
        let both = json!({"jwks_uri": "https://node.example/jwks", "jwks": {"keys": []}});
        assert_eq!(code(with(both)), "invalid_client_metadata");
        let m = with(json!({"jwks_uri": "https://node.example/jwks"})).unwrap();
        assert_eq!(m.token_endpoint_auth_method, AuthMethod::PrivateKeyJwt);
        let http = Rules { scopes: &s, legacy: LegacyGrants::default(), plain_http: true };
        let body = json!({"token_endpoint_auth_method": "private_key_jwt", "grant_types": ["client_credentials"],
                          "jwks_uri": "http://192.0.2.7:8080/jwks"});
        assert!(parse(&body, &http).is_ok(), "plain http where the deployment runs without TLS");
    }

    #[test]
    fn form_lists_split_on_white_space_and_repeat() {
        let form = vec![
            ("redirect_uris".to_owned(), "https://a.example/cb\nhttps://b.example/cb".to_owned()),
            ("redirect_uris".to_owned(), "https://c.example/cb".to_owned()),
            ("client_name".to_owned(), "My Node".to_owned()),
        ];
        let m = parse(&form_to_json(&form), &rules(&scopes(), LegacyGrants::default())).unwrap();
        assert_eq!(m.redirect_uris.len(), 3);
        assert_eq!(m.client_name, "My Node");
    }
}
