//! NMOS APIs, scopes and access rights: the vocabulary of IS-10 tokens.
use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value, json};

/// The scope of an administrator's token: not an NMOS API, and so never in a token with one.
/// A machine client gets it only when its policy allows ([`crate::Config::grpc_admin_tokens`]
/// lets the services accept it from gRPC callers without a client certificate).
pub const ADMIN_SCOPE: &str = "nmos-auth:admin";

/// An OAuth 2.0 grant type (RFC 6749), as a client registers for it (RFC 7591 `grant_types`) and
/// asks for a token with it (`grant_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
    /// Legacy (RFC 6749 §4.3), only when switched on.
    Password,
    /// Legacy (RFC 6749 §4.2), only when switched on.
    Implicit,
}

impl GrantType {
    pub const ALL: [GrantType; 5] = [
        GrantType::AuthorizationCode,
        GrantType::RefreshToken,
        GrantType::ClientCredentials,
        GrantType::Password,
        GrantType::Implicit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::ClientCredentials => "client_credentials",
            GrantType::Password => "password",
            GrantType::Implicit => "implicit",
        }
    }

    pub fn parse(s: &str) -> Option<GrantType> {
        GrantType::ALL.into_iter().find(|g| g.as_str() == s)
    }
}

impl fmt::Display for GrantType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A client's identifier (RFC 6749 §2.2): issued by the client registry, opaque to everyone
/// else, and compared only with another `ClientId`. Request parameters and stored rows become one
/// where they are read.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct ClientId(String);

impl ClientId {
    pub fn new(id: impl Into<String>) -> ClientId {
        ClientId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A client's redirect URI (RFC 6749 §3.1.2): an absolute http or https URL with a host, no
/// user information, no fragment and no wildcard. It is kept exactly as the client registered
/// it, because it is compared byte for byte, never normalised (RFC 9700 §4.1.1: exact matching).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct RedirectUri(String);

impl RedirectUri {
    /// Checks a redirect URI; the error says what is wrong with it.
    pub fn parse(value: &str) -> Result<RedirectUri, String> {
        let url = url::Url::parse(value).map_err(|_| "is not an absolute URI".to_owned())?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err("must be an http or https URL".into());
        }
        // `http://127.0.0.1:80@evil.example/cb` goes to evil.example (RFC 9700 §4.1.3).
        if !url.username().is_empty() || url.password().is_some() || value.contains('@') {
            return Err("must not hold user information (an @)".into());
        }
        if url.fragment().is_some() {
            return Err("must not have a fragment".into());
        }
        if value.contains('*') {
            return Err("must not contain wildcards; redirect URIs are matched exactly".into());
        }
        // Read as a slash by browsers, as part of a name by some other parsers.
        if value.contains('\\') || value.chars().any(char::is_whitespace) {
            return Err("must not contain a backslash or white space".into());
        }
        Ok(RedirectUri(value.to_owned()))
    }

    /// Whether a client may register it with a server that serves plain http (`plain_http`) or
    /// https. Over https only https, except a loopback address for a native app (RFC 8252
    /// §7.3, §8.3): a plain-http callback would carry the code in clear. A server that itself
    /// runs without TLS (a plant's unsecured NMOS network, where nmos-cpp registers
    /// `http://<its address>:<port>/x-authorization/callback`) accepts plain http.
    pub fn allowed(&self, plain_http: bool) -> Result<(), String> {
        if self.0.starts_with("https://") || plain_http || self.is_loopback() {
            Ok(())
        } else {
            Err("must be https on a server that uses TLS (plain http only for a loopback address)".into())
        }
    }

    /// Whether it names this machine by a loopback address (127.0.0.0/8, ::1, localhost).
    fn is_loopback(&self) -> bool {
        match url::Url::parse(&self.0).ok().as_ref().and_then(url::Url::host) {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
            None => false,
        }
    }

    /// The host a person is sent to, for the consent page.
    pub fn host(&self) -> String {
        url::Url::parse(&self.0).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default()
    }

    /// Whether `sent` (an authorization or token request's `redirect_uri`) is this URI.
    pub fn is(&self, sent: &str) -> bool {
        self.0 == sent
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RedirectUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An NMOS API namespace, as in `/x-nmos/<api>/` and in the `x-nmos-<api>` claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NmosApi {
    Registration,
    Query,
    Node,
    Connection,
    Netctrl,
    Events,
    Channelmapping,
}

impl NmosApi {
    pub const ALL: [NmosApi; 7] = [
        NmosApi::Registration,
        NmosApi::Query,
        NmosApi::Node,
        NmosApi::Connection,
        NmosApi::Netctrl,
        NmosApi::Events,
        NmosApi::Channelmapping,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NmosApi::Registration => "registration",
            NmosApi::Query => "query",
            NmosApi::Node => "node",
            NmosApi::Connection => "connection",
            NmosApi::Netctrl => "netctrl",
            NmosApi::Events => "events",
            NmosApi::Channelmapping => "channelmapping",
        }
    }

    pub fn parse(s: &str) -> Option<NmosApi> {
        NmosApi::ALL.into_iter().find(|api| api.as_str() == s)
    }

    /// The private claim that carries this API's permissions.
    pub fn claim_name(self) -> String {
        format!("x-nmos-{}", self.as_str())
    }
}

impl fmt::Display for NmosApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of NMOS API scopes, kept in a stable order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope(Vec<NmosApi>);

/// A scope value that names no NMOS API this server knows.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope {0:?}")]
pub struct UnknownScope(pub String);

impl Scope {
    /// Parses a space-separated scope string (RFC 6749 §3.3). Repeats are folded.
    pub fn parse(s: &str) -> Result<Scope, UnknownScope> {
        let mut apis = Vec::new();
        for word in s.split(' ').filter(|w| !w.is_empty()) {
            let api = NmosApi::parse(word).ok_or_else(|| UnknownScope(word.to_owned()))?;
            apis.push(api);
        }
        Ok(Scope::from_apis(apis))
    }

    pub fn from_apis(apis: impl IntoIterator<Item = NmosApi>) -> Scope {
        let mut v: Vec<NmosApi> = apis.into_iter().collect();
        v.sort();
        v.dedup();
        Scope(v)
    }

    pub fn all() -> Scope {
        Scope(NmosApi::ALL.to_vec())
    }

    pub fn apis(&self) -> &[NmosApi] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, api: NmosApi) -> bool {
        self.0.contains(&api)
    }

    pub fn is_subset_of(&self, other: &Scope) -> bool {
        self.0.iter().all(|api| other.contains(*api))
    }

    pub fn intersect(&self, other: &Scope) -> Scope {
        Scope(self.0.iter().copied().filter(|api| other.contains(*api)).collect())
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let words: Vec<&str> = self.0.iter().map(|api| api.as_str()).collect();
        f.write_str(&words.join(" "))
    }
}

/// What a principal may do with one NMOS API.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    #[default]
    None,
    Read,
    Write,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::None => "none",
            Access::Read => "read",
            Access::Write => "write",
        }
    }

    pub fn parse(s: &str) -> Option<Access> {
        match s {
            "none" => Some(Access::None),
            "read" => Some(Access::Read),
            "write" => Some(Access::Write),
            _ => None,
        }
    }

    /// The gRPC enum's value; `None` for a number that names no level.
    pub fn from_proto(value: i32) -> Option<Access> {
        match nmos_auth_proto::Access::try_from(value) {
            Ok(nmos_auth_proto::Access::None) => Some(Access::None),
            Ok(nmos_auth_proto::Access::Read) => Some(Access::Read),
            Ok(nmos_auth_proto::Access::Write) => Some(Access::Write),
            _ => None,
        }
    }

    pub fn to_proto(self) -> nmos_auth_proto::Access {
        match self {
            Access::None => nmos_auth_proto::Access::None,
            Access::Read => nmos_auth_proto::Access::Read,
            Access::Write => nmos_auth_proto::Access::Write,
        }
    }

    /// The IS-10 access-permissions object for this level, or `None` when it grants nothing
    /// (IS-10 forbids empty `x-nmos-*` objects). Write implies read, listed explicitly.
    pub fn permissions(self) -> Option<Value> {
        match self {
            Access::None => None,
            Access::Read => Some(json!({"read": ["*"]})),
            Access::Write => Some(json!({"read": ["*"], "write": ["*"]})),
        }
    }
}

/// Access per NMOS API; APIs not present have [`Access::None`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessRights(BTreeMap<NmosApi, Access>);

impl AccessRights {
    pub fn get(&self, api: NmosApi) -> Access {
        self.0.get(&api).copied().unwrap_or_default()
    }

    pub fn set(&mut self, api: NmosApi, access: Access) {
        if access == Access::None {
            self.0.remove(&api);
        } else {
            self.0.insert(api, access);
        }
    }

    /// Every API at the same level.
    pub fn uniform(access: Access) -> AccessRights {
        let mut rights = AccessRights::default();
        for api in NmosApi::ALL {
            rights.set(api, access);
        }
        rights
    }

    /// Parses `api=level` pairs separated by commas, e.g. `registration=write,query=read`.
    pub fn parse_list(s: &str) -> Result<AccessRights, String> {
        let mut rights = AccessRights::default();
        for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (api, level) = pair.split_once('=').ok_or_else(|| format!("{pair:?} is not api=level"))?;
            let api = NmosApi::parse(api.trim()).ok_or_else(|| format!("unknown API {api:?}"))?;
            let level = Access::parse(level.trim())
                .ok_or_else(|| format!("unknown access level {level:?} (none, read, write)"))?;
            rights.set(api, level);
        }
        Ok(rights)
    }

    /// From the gRPC form; entries for unknown APIs or levels grant nothing.
    pub fn from_proto(rights: &[nmos_auth_proto::ApiRight]) -> AccessRights {
        let mut out = AccessRights::default();
        for r in rights {
            if let Some(api) = NmosApi::parse(&r.api) {
                out.set(api, Access::from_proto(r.access).unwrap_or(Access::None));
            }
        }
        out
    }

    /// The gRPC form: one entry per known API, including those with no access.
    pub fn to_proto(&self) -> Vec<nmos_auth_proto::ApiRight> {
        NmosApi::ALL
            .into_iter()
            .map(|api| nmos_auth_proto::ApiRight {
                api: api.as_str().to_owned(),
                access: self.get(api).to_proto() as i32,
            })
            .collect()
    }

    /// The `x-nmos-<api>` claims for the APIs in `scope`, leaving out APIs with no access.
    pub fn claims_for(&self, scope: &Scope) -> Map<String, Value> {
        scope.apis().iter().filter_map(|api| Some((api.claim_name(), self.get(*api).permissions()?))).collect()
    }

    /// The part of `scope` this principal has any access to.
    pub fn grantable(&self, scope: &Scope) -> Scope {
        Scope::from_apis(scope.apis().iter().copied().filter(|api| self.get(*api) != Access::None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_are_checked_then_matched_exactly() {
        let uri = RedirectUri::parse("http://127.0.0.1:18086/x-authorization/callback").unwrap();
        assert!(uri.is("http://127.0.0.1:18086/x-authorization/callback"));
        for near in [
            "http://127.0.0.1:18086/x-authorization/callback/",
            "http://127.0.0.1:18086/x-authorization/Callback",
            "http://127.0.0.1:18086/x-authorization/callback?x=1",
            "HTTP://127.0.0.1:18086/x-authorization/callback",
            "http://127.0.0.1:18086/x-authorization/%63allback",
        ] {
            assert!(!uri.is(near), "{near}");
        }
        for (bad, why) in [
            ("/relative/cb", "absolute"),
            ("urn:example:cb", "http or https"),
            ("https://c.example/cb#frag", "fragment"),
            ("https://*.example/cb", "wildcards"),
            ("http://127.0.0.1:24980@evil.example/cb", "user information"),
            ("https://user:pw@c.example/cb", "user information"),
            ("https://c.example\\@evil.example/cb", "user information"),
            ("https://c.example\\cb", "backslash"),
        ] {
            let said = RedirectUri::parse(bad).unwrap_err();
            assert!(said.contains(why), "{bad}: {said}");
        }
        for (uri, over_https) in [
            ("https://c.example/cb", true),
            ("http://127.0.0.1:9/cb", true),
            ("http://127.1.2.3/cb", true),
            ("http://[::1]:9/cb", true),
            ("http://localhost:9/cb", true),
            ("http://192.168.1.20:18086/x-authorization/callback", false),
            ("http://evil.example/cb", false),
        ] {
            let uri = RedirectUri::parse(uri).unwrap();
            assert_eq!(uri.allowed(false).is_ok(), over_https, "{uri} on an https server");
            assert!(uri.allowed(true).is_ok(), "{uri} on a plain-http server");
        }
        assert_eq!(RedirectUri::parse("http://evil.example:8/cb?x=1").unwrap().host(), "evil.example");
        let stored = serde_json::to_value(&uri).unwrap();
        assert_eq!(stored, Value::from(uri.as_str()), "stored as the plain string");
    }

    #[test]
    fn grant_types_read_back_as_written_and_nothing_else() {
        for grant in GrantType::ALL {
            assert_eq!(GrantType::parse(grant.as_str()), Some(grant));
            let json = serde_json::to_value(grant).unwrap();
            assert_eq!(json, Value::from(grant.as_str()));
        }
        for other in ["", "Client_Credentials", "urn:ietf:params:oauth:grant-type:device_code", "password "] {
            assert_eq!(GrantType::parse(other), None, "{other:?}");
        }
    }

    #[test]
    fn scope_parses_and_prints_in_stable_order() {
        let s = Scope::parse("events  registration events").unwrap();
        assert_eq!(s.to_string(), "registration events");
        assert_eq!(Scope::parse("registration bogus"), Err(UnknownScope("bogus".into())));
        assert!(Scope::parse("").unwrap().is_empty());
    }

    #[test]
    fn node_scope_is_not_mangled() {
        // The seed rebuilt scopes with lstrip("x-nmos-"), which turned "node" into "de".
        let rights = AccessRights::uniform(Access::Read);
        let claims = rights.claims_for(&Scope::parse("node").unwrap());
        assert!(claims.contains_key("x-nmos-node"));
    }

    #[test]
    fn no_access_means_no_claim() {
        let rights = AccessRights::parse_list("registration=write,query=none").unwrap();
        let claims = rights.claims_for(&Scope::parse("registration query").unwrap());
        assert_eq!(claims.len(), 1);
        assert_eq!(claims["x-nmos-registration"], json!({"read": ["*"], "write": ["*"]}));
        assert!(AccessRights::parse_list("registration=admin").is_err());
        assert!(AccessRights::parse_list("bogus=read").is_err());
    }
}
