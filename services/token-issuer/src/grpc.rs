//! gRPC transport of the token issuer: proto <-> domain, nothing else.
use nmos_auth_core::{ErrorCode, OAuthError};
use nmos_auth_proto as pb;
use nmos_auth_proto::token_issuer_server::TokenIssuer;
use tonic::{Request, Response, Status};

use nmos_auth_core::operator::administrator;

use crate::TokenIssuerService;
use crate::request::{Authorized, BasicCredentials, ClientRequest, Decision, Params};
use crate::store::SummaryFilter;

#[tonic::async_trait]
impl TokenIssuer for TokenIssuerService {
    async fn token(&self, request: Request<pb::TokenRequest>) -> Result<Response<pb::TokenResponse>, Status> {
        let r = request.into_inner();
        let tokens = self.token(client_request(r.params, r.client_authentication)?, &r.client_address).await?;
        Ok(Response::new(pb::TokenResponse {
            access_token: tokens.access_token,
            token_type: "Bearer".into(),
            expires_in: tokens.expires_in,
            scope: tokens.scope,
            refresh_token: tokens.refresh_token.unwrap_or_default(),
        }))
    }

    async fn authorize(
        &self,
        request: Request<pb::AuthorizeRequest>,
    ) -> Result<Response<pb::AuthorizeResponse>, Status> {
        let r = request.into_inner();
        let decision = match pb::AuthorizeDecision::try_from(r.decision) {
            Ok(pb::AuthorizeDecision::Validate) => Decision::Validate,
            Ok(pb::AuthorizeDecision::Check) => Decision::Check,
            Ok(pb::AuthorizeDecision::Approve) => Decision::Approve,
            Ok(pb::AuthorizeDecision::Deny) => Decision::Deny,
            Ok(pb::AuthorizeDecision::Unspecified) | Err(_) => {
                return Err(OAuthError::new(ErrorCode::InvalidRequest, "no decision").into());
            }
        };
        let outcome = match self.authorize(params(r.params)?, &r.username, decision).await? {
            Authorized::SignInNext => pb::authorize_response::Outcome::SignInNext(true),
            Authorized::Redirect(url) => pb::authorize_response::Outcome::Redirect(url),
            Authorized::Consent(consent) => pb::authorize_response::Outcome::Consent(pb::ConsentPrompt {
                client_id: consent.client_id.to_string(),
                client_name: consent.client_name,
                redirect_uri: consent.redirect_uri.to_string(),
                scope: consent.scope.to_string(),
                rights: consent
                    .rights
                    .into_iter()
                    .map(|(api, access)| pb::ApiRight {
                        api: api.as_str().to_owned(),
                        access: access.to_proto() as i32,
                    })
                    .collect(),
                withheld: consent.withheld.iter().map(|api| api.as_str().to_owned()).collect(),
            }),
        };
        Ok(Response::new(pb::AuthorizeResponse { outcome: Some(outcome) }))
    }

    async fn revoke(&self, request: Request<pb::RevokeRequest>) -> Result<Response<pb::RevokeResponse>, Status> {
        let r = request.into_inner();
        self.revoke(client_request(r.params, r.client_authentication)?).await?;
        Ok(Response::new(pb::RevokeResponse {}))
    }

    async fn introspect(
        &self,
        request: Request<pb::IntrospectRequest>,
    ) -> Result<Response<pb::IntrospectResponse>, Status> {
        let r = request.into_inner();
        let answer = self.introspect(client_request(r.params, r.client_authentication)?).await?;
        Ok(Response::new(pb::IntrospectResponse { json: answer.to_string().into_bytes() }))
    }

    async fn client_activity(
        &self,
        request: Request<pb::ClientActivityRequest>,
    ) -> Result<Response<pb::ClientActivityResponse>, Status> {
        administrator(&request, request.get_ref().requested_by.as_ref(), "read clients' activity")?;
        let r = request.into_inner();
        if r.client_ids.len() > MAX_ACTIVITY_CLIENTS {
            return Err(Status::invalid_argument(format!("at most {MAX_ACTIVITY_CLIENTS} clients at a time")));
        }
        let activity = self.client_activity(&r.client_ids, r.since).await?;
        let activity = r
            .client_ids
            .into_iter()
            .zip(activity)
            .map(|(client_id, (last, since))| pb::ClientActivity {
                client_id,
                last_issued_at: last.unwrap_or(0),
                issued_since: since.max(0) as u64,
            })
            .collect();
        Ok(Response::new(pb::ClientActivityResponse { activity }))
    }

    async fn token_summary(
        &self,
        request: Request<pb::TokenSummaryRequest>,
    ) -> Result<Response<pb::TokenSummaryResponse>, Status> {
        administrator(&request, request.get_ref().requested_by.as_ref(), "read the audit log")?;
        let r = request.into_inner();
        let until = if r.until == 0 { nmos_auth_core::now_unix() + 1 } else { r.until };
        if until <= r.since {
            return Err(Status::invalid_argument("the window must end after it starts"));
        }
        let filter = SummaryFilter {
            since: r.since,
            until,
            client_id: r.client_id,
            subject: r.subject,
            limit: i64::from(match r.limit {
                0 => 200,
                n => n.min(10_000),
            }),
        };
        let (rows, issued) = self.token_summary(&filter).await?;
        let rows = rows
            .into_iter()
            .map(|row| pb::TokenSummaryRow {
                client_id: row.client_id,
                subject: row.subject,
                grant_type: row.grant_type,
                issued: row.issued.max(0) as u64,
                first_at: row.first_at,
                last_at: row.last_at,
            })
            .collect();
        Ok(Response::new(pb::TokenSummaryResponse { rows, issued: issued.max(0) as u64 }))
    }

    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        self.events().list_for_administrators(request).await
    }

    async fn revoke_client_tokens(
        &self,
        request: Request<pb::RevokeClientTokensRequest>,
    ) -> Result<Response<pb::RevokeClientTokensResponse>, Status> {
        let by = administrator(&request, request.get_ref().requested_by.as_ref(), "revoke a client's tokens")?;
        let families = self.revoke_client(&request.get_ref().client_id, &by.username).await?;
        Ok(Response::new(pb::RevokeClientTokensResponse { families }))
    }
}

/// The most clients one ClientActivity call asks about (a page of the console and then some).
const MAX_ACTIVITY_CLIENTS: usize = 500;

fn params(params: Vec<pb::TokenParam>) -> Result<Params, OAuthError> {
    Params::new(params.into_iter().map(|p| (p.name, p.value)))
}

fn client_request(
    form: Vec<pb::TokenParam>,
    authentication: Option<pb::ClientAuthentication>,
) -> Result<ClientRequest, OAuthError> {
    let basic = match authentication.and_then(|a| a.method) {
        Some(pb::client_authentication::Method::Basic(basic)) => {
            Some(BasicCredentials { client_id: basic.client_id, client_secret: basic.client_secret })
        }
        Some(pb::client_authentication::Method::None(_)) | None => None,
    };
    Ok(ClientRequest { params: params(form)?, basic })
}
