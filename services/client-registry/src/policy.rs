//! An administrator's policy for a machine client: which scopes its client_credentials tokens
//! may carry, the `x-nmos-*` path lists per API, and their `aud`.
use std::collections::BTreeMap;

use nmos_auth_core::{NmosApi, Scope};
use nmos_auth_proto as pb;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paths {
    pub read: Vec<String>,
    pub write: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientPolicy {
    pub scope: String,
    pub permissions: BTreeMap<String, Paths>,
    pub audience: Vec<String>,
    /// May get an administrator's token ([`nmos_auth_core::api::ADMIN_SCOPE`]).
    #[serde(default)]
    pub admin: bool,
    /// May introspect other clients' tokens (a resource server using RFC 7662).
    #[serde(default)]
    pub introspect: bool,
}

const MAX_PATHS: usize = 64;

/// A path specifier relative to the API version: `*` wildcards, no leading slash, no spaces.
fn valid_path(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= 256
        && !path.starts_with('/')
        && !path.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// An `aud` value: a host name or wildcard domain, optionally with a scheme; no port or path.
pub fn valid_audience(aud: &str) -> bool {
    let host = aud.strip_prefix("https://").or_else(|| aud.strip_prefix("http://")).unwrap_or(aud);
    !host.is_empty()
        && !host.contains([':', '/', '?', '#'])
        && !host.chars().any(|c| c.is_whitespace() || c.is_control())
}

impl ClientPolicy {
    /// Checks a policy from the gRPC form against the scopes this server issues.
    pub fn from_proto(policy: pb::ClientPolicy, scopes: &Scope) -> Result<ClientPolicy, String> {
        let scope = Scope::parse(&policy.scope).map_err(|e| e.to_string())?;
        if (scope.is_empty() && !policy.admin && !policy.introspect) || !scope.is_subset_of(scopes) {
            return Err(format!("the policy's scope must name some of \"{scopes}\""));
        }
        let mut permissions = BTreeMap::new();
        for p in policy.permissions {
            let api = NmosApi::parse(&p.api).ok_or_else(|| format!("unknown NMOS API {:?}", p.api))?;
            if !scope.contains(api) {
                return Err(format!("permissions for {api}, which is not in the policy's scope"));
            }
            if p.read.is_empty() && p.write.is_empty() {
                return Err(format!("the permissions for {api} grant nothing; leave {api} out of the scope instead"));
            }
            if p.read.len() + p.write.len() > MAX_PATHS || !p.read.iter().chain(&p.write).all(|path| valid_path(path)) {
                return Err(format!(
                    "the paths for {api} must be relative paths such as \"*\" or \"single/senders/*\""
                ));
            }
            permissions.insert(api.as_str().to_owned(), Paths { read: p.read, write: p.write });
        }
        if let Some(bad) = policy.audience.iter().find(|a| !valid_audience(a)) {
            return Err(format!("audience {bad:?} must be a host name or wildcard domain without port or path"));
        }
        Ok(ClientPolicy {
            scope: scope.to_string(),
            permissions,
            audience: policy.audience,
            admin: policy.admin,
            introspect: policy.introspect,
        })
    }

    pub fn to_proto(&self) -> pb::ClientPolicy {
        pb::ClientPolicy {
            scope: self.scope.clone(),
            permissions: self
                .permissions
                .iter()
                .map(|(api, p)| pb::ApiPermission { api: api.clone(), read: p.read.clone(), write: p.write.clone() })
                .collect(),
            audience: self.audience.clone(),
            admin: self.admin,
            introspect: self.introspect,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(scope: &str, permissions: Vec<pb::ApiPermission>, audience: &[&str]) -> pb::ClientPolicy {
        pb::ClientPolicy {
            scope: scope.into(),
            permissions,
            audience: audience.iter().map(|a| a.to_string()).collect(),
            admin: false,
            introspect: false,
        }
    }

    fn perm(api: &str, read: &[&str], write: &[&str]) -> pb::ApiPermission {
        pb::ApiPermission {
            api: api.into(),
            read: read.iter().map(|p| p.to_string()).collect(),
            write: write.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn accepts_sensible_policies_only() {
        let all = Scope::all();
        let ok = policy("connection", vec![perm("connection", &["*"], &["single/senders/*"])], &["*.plant.example"]);
        let p = ClientPolicy::from_proto(ok, &all).unwrap();
        assert_eq!(p.permissions["connection"].write, vec!["single/senders/*"]);
        for bad in [
            policy("", vec![], &[]),
            policy("bogus", vec![], &[]),
            policy("query", vec![perm("connection", &["*"], &[])], &[]),
            policy("query", vec![perm("query", &[], &[])], &[]),
            policy("query", vec![perm("query", &["/abs"], &[])], &[]),
            policy("query", vec![perm("query", &["a b"], &[])], &[]),
            policy("query", vec![], &["host:443"]),
            policy("query", vec![], &["https://h.example/path"]),
        ] {
            assert!(ClientPolicy::from_proto(bad.clone(), &all).is_err(), "{bad:?}");
        }
        assert!(
            ClientPolicy::from_proto(policy("query", vec![], &[]), &Scope::parse("registration").unwrap()).is_err()
        );
        // An administrator's client needs no NMOS scope.
        let admin = pb::ClientPolicy { admin: true, ..policy("", vec![], &[]) };
        assert!(ClientPolicy::from_proto(admin, &all).unwrap().admin);
    }
}
