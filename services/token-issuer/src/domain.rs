//! Clients and users as the token issuer's grants see them: the registry's and the identity
//! service's answers, parsed once where they arrive, so that the grants work on types rather
//! than on strings and protobuf numbers.
use nmos_auth_core::{AccessRights, ClientId, GrantType, NmosApi, OAuthError, RedirectUri, Scope};
use nmos_auth_proto as pb;

/// An administrator's policy for a machine client's client_credentials tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The scopes it may get, instead of the server's allow-list.
    pub scope: Scope,
    /// The read and write path lists of an API's claim, where the policy names them.
    pub paths: Vec<(NmosApi, Vec<String>, Vec<String>)>,
    /// Its tokens' `aud`, instead of the server's (empty: the server's).
    pub audience: Vec<String>,
    /// It may get an administrator's token.
    pub admin: bool,
    /// It may introspect tokens issued to other clients (a resource server, RFC 7662).
    pub introspect: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    pub id: ClientId,
    pub name: String,
    pub grant_types: Vec<GrantType>,
    /// A public client (`token_endpoint_auth_method` none): it cannot keep a secret.
    pub public: bool,
    /// Registered in approval mode and not approved yet: no tokens.
    pub pending: bool,
    /// Disabled by an administrator: no tokens.
    pub disabled: bool,
    pub redirect_uris: Vec<RedirectUri>,
    /// The scope it registered for.
    pub scope: Scope,
    pub policy: Option<Policy>,
    /// Registered by a user on the web pages, or by anyone with `registration = open`: its
    /// redirect URIs are that user's or that stranger's say-so, not vouched for by an initial
    /// access token or an administrator's approval.
    pub redirects_unvouched: bool,
}

impl Client {
    /// The registry's client. What the registry stored was checked when it was stored: a value
    /// that does not parse now is a fault, not the client's.
    pub fn from_proto(client: pb::Client) -> Result<Client, OAuthError> {
        let policy = client
            .policy
            .map(|p| {
                let paths = p
                    .permissions
                    .into_iter()
                    .filter_map(|a| NmosApi::parse(&a.api).map(|api| (api, a.read, a.write)))
                    .collect();
                Ok::<_, OAuthError>(Policy {
                    scope: Scope::parse(&p.scope).map_err(OAuthError::internal)?,
                    paths,
                    audience: p.audience,
                    admin: p.admin,
                    introspect: p.introspect,
                })
            })
            .transpose()?;
        // One registered before today's rules refused it (user information, say) is not
        // honoured; the client's other URIs still are.
        let redirect_uris = client
            .redirect_uris
            .iter()
            .filter_map(|u| {
                RedirectUri::parse(u)
                    .inspect_err(|why| tracing::warn!(client_id = %client.client_id, redirect_uri = %u, why, "a registered redirect URI is no longer accepted"))
                    .ok()
            })
            .collect();
        let redirects_unvouched = !client.owner.is_empty() || client.registered_how == pb::Registration::Open as i32;
        Ok(Client {
            public: client.token_endpoint_auth_method == pb::TokenEndpointAuthMethod::None as i32,
            pending: client.status == pb::ClientStatus::Pending as i32,
            disabled: client.status == pb::ClientStatus::Disabled as i32,
            grant_types: client.grant_types.iter().filter_map(|g| GrantType::parse(g)).collect(),
            scope: Scope::parse(&client.scope).map_err(OAuthError::internal)?,
            id: ClientId::new(client.client_id),
            name: client.client_name,
            redirect_uris,
            policy,
            redirects_unvouched,
        })
    }

    /// Whether it registered for `grant`.
    pub fn may_use(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }
}

/// A user of the identity service, with their rights per API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub username: String,
    pub rights: AccessRights,
    pub disabled: bool,
    /// When the account was created (Unix seconds): a name can be given again to a new account
    /// once the old one is deleted, and what was granted before then is not the new account's.
    pub created_at: i64,
}

impl User {
    pub fn from_proto(user: pb::User) -> User {
        User {
            rights: AccessRights::from_proto(&user.rights),
            username: user.username,
            disabled: user.disabled,
            created_at: user.created_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> pb::Client {
        pb::Client {
            client_id: "c1".into(),
            client_name: "Node".into(),
            grant_types: vec!["client_credentials".into(), "device_code".into()],
            scope: "registration query".into(),
            token_endpoint_auth_method: pb::TokenEndpointAuthMethod::ClientSecretBasic as i32,
            status: pb::ClientStatus::Approved as i32,
            ..Default::default()
        }
    }

    #[test]
    fn a_redirect_uri_todays_rules_refuse_is_not_honoured() {
        let mut pb = stored();
        pb.redirect_uris = vec!["http://127.0.0.1:1@evil.example/cb".into(), "https://c.example/cb".into()];
        let client = Client::from_proto(pb).unwrap();
        let kept: Vec<&str> = client.redirect_uris.iter().map(RedirectUri::as_str).collect();
        assert_eq!(kept, ["https://c.example/cb"]);
    }

    #[test]
    fn redirect_uris_nobody_vouched_for_are_known_as_such() {
        let unvouched = |registered_how: pb::Registration, owner: &str| {
            let pb = pb::Client { registered_how: registered_how as i32, owner: owner.into(), ..stored() };
            Client::from_proto(pb).unwrap().redirects_unvouched
        };
        assert!(unvouched(pb::Registration::Open, ""), "registered openly");
        assert!(unvouched(pb::Registration::Page, "alice"), "registered on the pages");
        for vouched in [pb::Registration::Token, pb::Registration::Approval, pb::Registration::Unspecified] {
            assert!(!unvouched(vouched, ""), "{vouched:?}");
        }
    }

    #[test]
    fn a_stored_client_becomes_types_once() {
        let mut pb = stored();
        pb.policy = Some(pb::ClientPolicy {
            scope: "registration".into(),
            permissions: vec![
                pb::ApiPermission { api: "registration".into(), read: vec!["*".into()], write: vec![] },
                pb::ApiPermission { api: "no-such-api".into(), read: vec![], write: vec![] },
            ],
            audience: vec!["*.example.com".into()],
            admin: false,
            introspect: true,
        });
        let client = Client::from_proto(pb).unwrap();
        assert_eq!(client.grant_types, vec![GrantType::ClientCredentials], "unknown grants are dropped");
        assert!(client.may_use(GrantType::ClientCredentials));
        assert!(!client.may_use(GrantType::AuthorizationCode));
        assert!(!client.public && !client.pending);
        assert_eq!(client.scope.to_string(), "registration query");
        let policy = client.policy.unwrap();
        assert_eq!(policy.paths, vec![(NmosApi::Registration, vec!["*".to_string()], vec![])]);
        assert_eq!(policy.audience, vec!["*.example.com".to_string()]);
        assert!(policy.introspect && !policy.admin);
    }

    #[test]
    fn public_and_pending_clients_are_seen_as_such() {
        let mut pb = stored();
        pb.token_endpoint_auth_method = pb::TokenEndpointAuthMethod::None as i32;
        pb.status = pb::ClientStatus::Pending as i32;
        let client = Client::from_proto(pb).unwrap();
        assert!(client.public && client.pending && client.policy.is_none());
    }

    #[test]
    fn a_stored_scope_that_no_longer_parses_is_a_server_fault() {
        let mut pb = stored();
        pb.scope = "registration \u{7f}".into();
        let err = Client::from_proto(pb).unwrap_err();
        assert_eq!(err.code, nmos_auth_core::ErrorCode::ServerError, "{err:?}");
    }
}
