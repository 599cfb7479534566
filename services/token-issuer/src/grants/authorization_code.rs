//! RFC 6749 §4.1 with PKCE (RFC 7636): the authorization endpoint's decisions and the code
//! exchange at the token endpoint.
use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nmos_auth_core::capabilities::PKCE_METHODS;
use nmos_auth_core::secret::{self, random_token};
use nmos_auth_core::{ErrorCode, GrantType, OAuthError, RedirectUri, Scope};

use crate::TokenIssuerService;
use crate::claims::user_claims;
use crate::domain::Client;
use crate::grants::{Grant, UsedUp, give_back, refresh_token, some_right_left};
use crate::request::{Authorized, Consent, Decision, Params};
use crate::store::{CodeRow, CodeUse};

/// Codes live this long (RFC 6749 §4.1.2 recommends at most ten minutes).
const CODE_LIFETIME_SECS: i64 = 60;

/// An authorization request whose client and redirect URI are trusted.
struct Checked {
    client: Client,
    redirect_uri: RedirectUri,
    redirect_uri_sent: bool,
    state: Option<String>,
    /// This server's issuer identifier, sent back with every answer (RFC 9207).
    issuer: String,
}

/// What the rest of a valid authorization request asks for.
struct Valid {
    /// The legacy implicit grant (response_type=token) rather than a code.
    implicit: bool,
    scope: Scope,
    challenge: Option<(String, &'static str)>,
}

fn invalid_request(description: impl Into<String>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidRequest, description)
}

/// The client's redirect URI with the outcome added to its query (RFC 6749 §4.1.2), or to
/// its fragment for the implicit grant (§4.2.2). Success or error, it carries `iss` (RFC 9207
/// §2), so that a client talking to several servers can tell which one answered (mix-up attacks).
fn redirect(checked: &Checked, outcome: &[(&str, &str)], fragment: bool) -> Result<Authorized, OAuthError> {
    let mut url = url::Url::parse(checked.redirect_uri.as_str()).map_err(OAuthError::internal)?;
    let mut pairs: Vec<(&str, &str)> = outcome.to_vec();
    if let Some(state) = &checked.state {
        pairs.push(("state", state));
    }
    pairs.push(("iss", &checked.issuer));
    if fragment {
        let encoded = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
        url.set_fragment(Some(&encoded));
    } else {
        url.query_pairs_mut().extend_pairs(pairs);
    }
    Ok(Authorized::Redirect(url.into()))
}

fn error_redirect(checked: &Checked, error: &OAuthError, fragment: bool) -> Result<Authorized, OAuthError> {
    let description = error.description.clone().unwrap_or_default();
    redirect(checked, &[("error", error.code.as_str()), ("error_description", &description)], fragment)
}

/// The PKCE syntax of RFC 7636 §4.1: 43 to 128 unreserved characters.
fn is_pkce_string(s: &str) -> bool {
    (43..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

impl TokenIssuerService {
    /// Steps that decide whether the request can be trusted at all: on failure there is no
    /// redirect (RFC 6749 §4.1.2.1).
    async fn check_client(&self, params: &Params) -> Result<Checked, OAuthError> {
        let client_id = params.get("client_id").ok_or_else(|| invalid_request("client_id is required"))?;
        let client = self.client(client_id).await?.ok_or_else(|| invalid_request("unknown client_id"))?;
        if client.pending {
            // Its redirect URIs have not been vetted: never redirect there.
            return Err(invalid_request("this application is waiting for an administrator's approval"));
        }
        if client.disabled {
            return Err(invalid_request("this application has been disabled by an administrator"));
        }
        let (redirect_uri, sent) = match params.get("redirect_uri") {
            Some(uri) => match client.redirect_uris.iter().find(|r| r.is(uri)) {
                Some(registered) => (registered.clone(), true),
                None => return Err(invalid_request("redirect_uri is not one this client registered")),
            },
            None if client.redirect_uris.len() == 1 => (client.redirect_uris[0].clone(), false),
            None => return Err(invalid_request("redirect_uri is required")),
        };
        Ok(Checked {
            client,
            redirect_uri,
            redirect_uri_sent: sent,
            state: params.get("state").map(str::to_owned),
            issuer: self.policy.issuer.clone(),
        })
    }

    /// The rest of RFC 6749 §4.1.1 and RFC 7636 §4.3: failures are redirected to the client.
    fn check_request(&self, checked: &Checked, params: &Params) -> Result<Valid, OAuthError> {
        let implicit = match params.get("response_type") {
            Some("code") => false,
            Some("token") if self.legacy.implicit => true,
            Some(_) => return Err(OAuthError::new(ErrorCode::UnsupportedResponseType, "only response_type=code")),
            None => return Err(invalid_request("response_type is required")),
        };
        let client = &checked.client;
        let grant = if implicit { GrantType::Implicit } else { GrantType::AuthorizationCode };
        if !client.may_use(grant) {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                format!("this client is not registered for the {grant} grant"),
            ));
        }
        let registered = &client.scope;
        let scope = match params.get("scope") {
            Some(s) => {
                let requested = Scope::parse(s).map_err(|e| OAuthError::new(ErrorCode::InvalidScope, e.to_string()))?;
                if !requested.is_subset_of(registered) {
                    return Err(OAuthError::new(
                        ErrorCode::InvalidScope,
                        format!("this client is registered for the scopes \"{registered}\" only"),
                    ));
                }
                requested
            }
            None => registered.clone(),
        };
        let public = client.public;
        let challenge = match (params.get("code_challenge"), params.get("code_challenge_method")) {
            // PKCE protects codes; the implicit grant has none.
            _ if implicit => None,
            (Some(challenge), method) => {
                let method = method.unwrap_or("plain");
                let Some(method) = PKCE_METHODS.into_iter().find(|m| *m == method) else {
                    return Err(invalid_request(format!("code_challenge_method {method:?} is not supported")));
                };
                if !is_pkce_string(challenge) {
                    return Err(invalid_request("code_challenge must be 43 to 128 unreserved characters"));
                }
                Some((challenge.to_owned(), method))
            }
            (None, Some(_)) => return Err(invalid_request("code_challenge_method without code_challenge")),
            (None, None) if public => return Err(invalid_request("public clients must use PKCE (code_challenge)")),
            (None, None) => None,
        };
        Ok(Valid { implicit, scope, challenge })
    }

    /// RFC 6749 §4.1.1–4.1.2 for `username`, signed in: the request's `params`, and what the
    /// user decided; or, with [`Decision::Validate`], the request alone, before anyone signs in.
    pub async fn authorize(
        &self,
        params: Params,
        username: &str,
        decision: Decision,
    ) -> Result<Authorized, OAuthError> {
        let checked = self.check_client(&params).await?;
        let valid = match self.check_request(&checked, &params) {
            Ok(valid) => valid,
            // RFC 9700 §4.11.2: the server must not be an open redirector. Anyone with an account
            // can register a client on the pages with a redirect URI of their choosing (and with
            // `registration = open`, anyone at all, on the registration endpoint) and send people
            // a request that cannot succeed; its error goes there only once someone has signed in
            // (a client registered with a token or approved is redirected to at once).
            Err(_) if matches!(decision, Decision::Validate) && checked.client.redirects_unvouched => {
                return Ok(Authorized::SignInNext);
            }
            Err(e) => {
                let fragment = self.legacy.implicit && params.get("response_type") == Some("token");
                return error_redirect(&checked, &e, fragment);
            }
        };
        if let Decision::Validate = decision {
            return Ok(Authorized::SignInNext);
        }
        let user = self.user(username).await?;
        let grantable = user.rights.grantable(&valid.scope);
        match decision {
            Decision::Validate => Ok(Authorized::SignInNext),
            Decision::Check => Ok(Authorized::Consent(Consent {
                rights: grantable.apis().iter().map(|api| (*api, user.rights.get(*api))).collect(),
                withheld: valid.scope.apis().iter().copied().filter(|api| !grantable.contains(*api)).collect(),
                client_id: checked.client.id,
                client_name: checked.client.name,
                redirect_uri: checked.redirect_uri,
                scope: grantable,
            })),
            Decision::Deny => {
                tracing::info!(target: "audit", event = "authorization_denied", client_id = %checked.client.id, username = %user.username, "the user denied access");
                error_redirect(
                    &checked,
                    &OAuthError::new(ErrorCode::AccessDenied, "the user denied access"),
                    valid.implicit,
                )
            }
            Decision::Approve if grantable.is_empty() => error_redirect(
                &checked,
                &OAuthError::new(ErrorCode::AccessDenied, "the user has no rights to any of the requested APIs"),
                valid.implicit,
            ),
            Decision::Approve if valid.implicit => {
                let claims = user_claims(&user, &checked.client.id, &valid.scope);
                let issued = self.issue(GrantType::Implicit, &checked.client.id, claims).await?;
                let expires_in = self.policy.lifetime_secs.to_string();
                let outcome = [
                    ("access_token", issued.jws.as_str()),
                    ("token_type", "Bearer"),
                    ("expires_in", &expires_in),
                    ("scope", &issued.scope),
                ];
                redirect(&checked, &outcome, true)
            }
            Decision::Approve => {
                let code = random_token::<32>();
                let (code_challenge, code_challenge_method) = match &valid.challenge {
                    Some((challenge, method)) => (Some(challenge.clone()), Some((*method).to_owned())),
                    None => (None, None),
                };
                self.store
                    .insert_code(&CodeRow {
                        digest: secret::digest(&code),
                        client_id: checked.client.id.clone(),
                        username: user.username.clone(),
                        redirect_uri: checked.redirect_uri.to_string(),
                        redirect_uri_sent: checked.redirect_uri_sent,
                        // What the user saw and approved: the request narrowed to their rights.
                        scope: grantable.to_string(),
                        code_challenge,
                        code_challenge_method,
                        expires_at: nmos_auth_core::now_unix() + CODE_LIFETIME_SECS,
                    })
                    .await?;
                tracing::info!(target: "audit", event = "authorization_granted", client_id = %checked.client.id, username = %user.username, scope = %grantable, "the user approved access");
                redirect(&checked, &[("code", &code)], false)
            }
        }
    }
}

/// Checks a code_verifier against the stored challenge (RFC 7636 §4.6), in constant time, for
/// each of `PKCE_METHODS`.
fn verifier_matches(verifier: &str, challenge: &str, method: &str) -> bool {
    let derived = match method {
        "S256" => URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes())),
        "plain" => verifier.to_owned(),
        _ => return false,
    };
    secret::constant_time_eq(derived.as_bytes(), challenge.as_bytes())
}

/// RFC 6749 §4.1.3: exchanges a code for tokens.
pub async fn exchange(service: &TokenIssuerService, client: &Client, params: &Params) -> Result<Grant, OAuthError> {
    let invalid_grant = |d: &str| OAuthError::new(ErrorCode::InvalidGrant, d);
    let code = params.get("code").ok_or_else(|| invalid_request("code is required"))?;
    let digest = secret::digest(code);
    let row = match service.store.consume_code(&digest).await? {
        Some(CodeUse::First(row)) => row,
        Some(CodeUse::Replayed(row)) => {
            // RFC 6749 §4.1.2: the store has revoked what was issued from it.
            tracing::warn!(target: "audit", event = "authorization_code_replayed", client_id = %row.client_id, username = %row.username, "an authorization code was used twice; the tokens issued from it are revoked");
            return Err(invalid_grant("the authorization code was already used"));
        }
        None => return Err(invalid_grant("unknown authorization code")),
    };
    if row.client_id != client.id {
        return Err(invalid_grant("the authorization code was issued to another client"));
    }
    if row.expires_at <= nmos_auth_core::now_unix() {
        return Err(invalid_grant("the authorization code has expired"));
    }
    match params.get("redirect_uri") {
        Some(uri) if uri == row.redirect_uri => {}
        Some(_) => return Err(invalid_grant("redirect_uri differs from the authorization request's")),
        None if row.redirect_uri_sent => return Err(invalid_request("redirect_uri is required")),
        None => {}
    }
    match (&row.code_challenge, &row.code_challenge_method, params.get("code_verifier")) {
        (Some(challenge), Some(method), Some(verifier))
            if !is_pkce_string(verifier) || !verifier_matches(verifier, challenge, method) =>
        {
            return Err(invalid_grant("code_verifier does not match the code_challenge"));
        }
        (Some(_), _, None) => return Err(invalid_request("code_verifier is required")),
        (None, _, Some(_)) => {
            return Err(invalid_request("code_verifier sent, but the authorization request had no code_challenge"));
        }
        _ => {}
    }
    let issue = async {
        let user = service.granting_user(&row.username, row.expires_at - CODE_LIFETIME_SECS).await?;
        let scope = Scope::parse(&row.scope).map_err(OAuthError::internal)?;
        let claims = user_claims(&user, &client.id, &scope);
        some_right_left(&claims)?;
        let refresh = refresh_token::start_family_for(service, client, &user.username, &scope, Some(&digest)).await?;
        Ok((claims, refresh))
    };
    match issue.await {
        Ok((claims, refresh)) => Ok(Grant { claims, refresh, code_digest: Some(digest), rotation: None }),
        Err(e) => {
            // An outage (identity or the database down): the code is given back for the retry.
            give_back(service.store.as_ref(), UsedUp::Code(digest), &e).await;
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc_7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(verifier_matches(verifier, challenge, "S256"));
        assert!(!verifier_matches(verifier, challenge, "plain"));
        assert!(verifier_matches(verifier, verifier, "plain"));
        assert!(!verifier_matches(verifier, verifier, "S512"), "only the announced methods");
        for method in PKCE_METHODS {
            let challenge = if method == "S256" { challenge } else { verifier };
            assert!(verifier_matches(verifier, challenge, method), "{method}");
        }
        assert!(is_pkce_string(verifier));
        assert!(!is_pkce_string("short"));
        assert!(!is_pkce_string(&"a".repeat(129)));
        assert!(!is_pkce_string(&format!("{}+", "a".repeat(50))));
    }
}
