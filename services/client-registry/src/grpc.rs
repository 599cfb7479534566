//! gRPC transport of the client registry: proto <-> domain, nothing else.
use nmos_auth_core::operator::{Operator, administrator, operator};
use nmos_auth_core::{ErrorCode, OAuthError};
use nmos_auth_proto as pb;
use nmos_auth_proto::client_registry_server::ClientRegistry;
use tonic::{Request, Response, Status};

use crate::metadata::{AuthMethod, ClientKind, form_to_json};
use crate::policy::ClientPolicy;
use crate::store::ClientSearch;
use crate::{Client, ClientRegistryService, Credential, Registration, WebUser};

fn client_to_proto(client: &Client) -> pb::Client {
    let m = &client.metadata;
    pb::Client {
        client_id: client.client_id.clone(),
        client_id_issued_at: client.issued_at,
        client_secret_expires_at: 0,
        client_name: m.client_name.clone(),
        redirect_uris: m.redirect_uris.iter().map(|u| u.as_str().to_owned()).collect(),
        grant_types: m.grant_types.iter().map(|g| g.as_str().to_owned()).collect(),
        response_types: m.response_types.clone(),
        scope: m.scope.clone(),
        token_endpoint_auth_method: match m.token_endpoint_auth_method {
            AuthMethod::ClientSecretBasic => pb::TokenEndpointAuthMethod::ClientSecretBasic,
            AuthMethod::ClientSecretPost => pb::TokenEndpointAuthMethod::ClientSecretPost,
            AuthMethod::PrivateKeyJwt => pb::TokenEndpointAuthMethod::PrivateKeyJwt,
            AuthMethod::None => pb::TokenEndpointAuthMethod::None,
        } as i32,
        client_uri: m.client_uri.clone().unwrap_or_default(),
        logo_uri: m.logo_uri.clone().unwrap_or_default(),
        contacts: m.contacts.clone(),
        software_id: m.software_id.clone().unwrap_or_default(),
        software_version: m.software_version.clone().unwrap_or_default(),
        owner: client.owner.clone(),
        status: match (client.pending, client.disabled) {
            (true, _) => pb::ClientStatus::Pending,
            (false, true) => pb::ClientStatus::Disabled,
            (false, false) => pb::ClientStatus::Approved,
        } as i32,
        kind: match m.kind() {
            ClientKind::Machine => pb::ClientKind::Machine,
            ClientKind::Confidential => pb::ClientKind::Confidential,
            ClientKind::Public => pb::ClientKind::Public,
        } as i32,
        jwks_uri: m.jwks_uri.clone().unwrap_or_default(),
        jwks_json: m.jwks.as_ref().map(|j| j.to_string()).unwrap_or_default(),
        policy: client.policy.as_ref().map(ClientPolicy::to_proto),
        registered_how: match client.registered_how.as_str() {
            crate::BY_TOKEN => pb::Registration::Token,
            crate::ON_A_PAGE => pb::Registration::Page,
            crate::FOR_APPROVAL => pb::Registration::Approval,
            crate::OPENLY => pb::Registration::Open,
            _ => pb::Registration::Unspecified,
        } as i32,
    }
}

/// The caller, when an operator makes the call (the `admin` certificate, an administrator's
/// token, `nmos-auth admin` on the machine): an administrator, whatever the request says.
/// Otherwise the request names the signed-in user (set by the gateway, which vouches for them).
fn operator_caller<T>(request: &Request<T>) -> Option<pb::WebUser> {
    Some(pb::WebUser { username: operator(request)?.name(), admin: true, account_created_at: 0 })
}

/// The most clients one search returns, and how many when the request does not say.
const MAX_PAGE: u32 = 500;
const DEFAULT_PAGE: u32 = 50;

/// An administrator's search, from its request.
fn search_of(r: &pb::ListClientsRequest) -> Result<ClientSearch, Status> {
    // The names the store keeps (pb's, which the registry's own constants spell the same).
    let kind = match pb::ClientKind::try_from(r.kind) {
        Ok(kind) => kind.name().unwrap_or(""),
        Err(_) => return Err(Status::invalid_argument(format!("unknown client kind {}", r.kind))),
    };
    let status = match pb::ClientStatus::try_from(r.status) {
        Ok(status) => status.name().unwrap_or(""),
        Err(_) => return Err(Status::invalid_argument(format!("unknown client status {}", r.status))),
    };
    if r.name.chars().count() > 200 {
        return Err(Status::invalid_argument("the name to search for is too long (at most 200 characters)"));
    }
    let limit = match r.limit {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    };
    Ok(ClientSearch {
        kind: kind.to_owned(),
        status: status.to_owned(),
        name: r.name.clone(),
        offset: i64::from(r.offset),
        limit: i64::from(limit),
    })
}

fn registration_to_proto(r: Registration) -> pb::RegisterClientResponse {
    pb::RegisterClientResponse {
        client: Some(client_to_proto(&r.client)),
        client_secret: r.client_secret.unwrap_or_default(),
        registration_access_token: r.registration_access_token.unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl ClientRegistry for ClientRegistryService {
    async fn register_client(
        &self,
        request: Request<pb::RegisterClientRequest>,
    ) -> Result<Response<pb::RegisterClientResponse>, Status> {
        let by_operator = operator_caller(&request);
        let r = request.into_inner();
        let body = match r.body {
            Some(pb::register_client_request::Body::Json(bytes)) => serde_json::from_slice(&bytes).map_err(|e| {
                OAuthError::new(ErrorCode::InvalidClientMetadata, format!("the request body is not valid JSON: {e}"))
            })?,
            Some(pb::register_client_request::Body::Form(form)) => {
                let params: Vec<(String, String)> = form.params.into_iter().map(|p| (p.name, p.value)).collect();
                form_to_json(&params)
            }
            None => {
                return Err(OAuthError::new(ErrorCode::InvalidClientMetadata, "no client metadata").into());
            }
        };
        let token = (!r.initial_access_token.is_empty()).then_some(r.initial_access_token.as_str());
        let web_user = by_operator.or(r.registered_by).map(WebUser::from);
        let registration = self.register(&body, token, web_user.as_ref()).await?;
        Ok(Response::new(registration_to_proto(registration)))
    }

    async fn read_client_configuration(
        &self,
        request: Request<pb::ClientConfigurationRequest>,
    ) -> Result<Response<pb::RegisterClientResponse>, Status> {
        let r = request.into_inner();
        let registration = self.read_configuration(&r.client_id, &r.registration_access_token).await?;
        Ok(Response::new(registration_to_proto(registration)))
    }

    async fn update_client_configuration(
        &self,
        request: Request<pb::UpdateClientConfigurationRequest>,
    ) -> Result<Response<pb::RegisterClientResponse>, Status> {
        let r = request.into_inner();
        let body: serde_json::Value = serde_json::from_slice(&r.json).map_err(|e| {
            OAuthError::new(ErrorCode::InvalidClientMetadata, format!("the request body is not valid JSON: {e}"))
        })?;
        let registration = self.update_configuration(&r.client_id, &r.registration_access_token, &body).await?;
        Ok(Response::new(registration_to_proto(registration)))
    }

    async fn delete_client_configuration(
        &self,
        request: Request<pb::ClientConfigurationRequest>,
    ) -> Result<Response<pb::DeleteClientResponse>, Status> {
        let r = request.into_inner();
        self.delete_configuration(&r.client_id, &r.registration_access_token).await?;
        Ok(Response::new(pb::DeleteClientResponse {}))
    }

    async fn authenticate_client(
        &self,
        request: Request<pb::AuthenticateClientRequest>,
    ) -> Result<Response<pb::Client>, Status> {
        let r = request.into_inner();
        let credential = match &r.credential {
            Some(pb::authenticate_client_request::Credential::ClientSecretBasic(secret)) => {
                Credential::Secret(secret, AuthMethod::ClientSecretBasic)
            }
            Some(pb::authenticate_client_request::Credential::ClientSecretPost(secret)) => {
                Credential::Secret(secret, AuthMethod::ClientSecretPost)
            }
            Some(pb::authenticate_client_request::Credential::PrivateKeyJwt(assertion)) => {
                Credential::Assertion(assertion)
            }
            Some(pb::authenticate_client_request::Credential::None(_)) => Credential::None,
            None => return Err(Status::invalid_argument("a credential is required")),
        };
        let client = self.authenticate(&r.client_id, credential).await?;
        Ok(Response::new(client_to_proto(&client)))
    }

    async fn get_client(&self, request: Request<pb::GetClientRequest>) -> Result<Response<pb::Client>, Status> {
        let client_id = request.into_inner().client_id;
        match self.get(&client_id).await? {
            Some(client) => Ok(Response::new(client_to_proto(&client))),
            None => Err(Status::not_found("no such client")),
        }
    }

    async fn create_initial_access_token(
        &self,
        request: Request<pb::CreateInitialAccessTokenRequest>,
    ) -> Result<Response<pb::CreateInitialAccessTokenResponse>, Status> {
        let by = administrator(&request, request.get_ref().requested_by.as_ref(), "create initial access tokens")?;
        let r = request.into_inner();
        let description = if r.description.is_empty() { format!("by {}", by.username) } else { r.description };
        let (token, expires_at) =
            ClientRegistryService::create_initial_access_token(self, r.lifetime_secs, &description, &by.username)
                .await
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(Response::new(pb::CreateInitialAccessTokenResponse { token, expires_at: expires_at.unwrap_or(0) }))
    }

    async fn list_clients(
        &self,
        request: Request<pb::ListClientsRequest>,
    ) -> Result<Response<pb::ListClientsResponse>, Status> {
        if request.get_ref().all {
            administrator(&request, request.get_ref().requested_by.as_ref(), "list every client")?;
            let search = search_of(request.get_ref())?;
            let (clients, total) = self.search(&search).await?;
            return Ok(Response::new(pb::ListClientsResponse {
                clients: clients.iter().map(client_to_proto).collect(),
                total: total.max(0) as u64,
            }));
        }
        let by_operator = operator_caller(&request);
        let r = request.into_inner();
        let asking = by_operator.or(r.requested_by.clone());
        let allowed = match &asking {
            Some(user) if user.admin => true,
            Some(user) => !r.pending && user.username == r.owner,
            None => false,
        };
        if !allowed {
            return Err(Status::permission_denied("one lists one's own clients; only administrators list others'"));
        }
        // Someone asking for their own clients gets those their account registered, not those of
        // an earlier, deleted account of the same name.
        let since = asking.filter(|user| user.username == r.owner).map_or(0, |user| user.account_created_at);
        let clients = if r.pending { self.pending().await? } else { self.list(&r.owner, since).await? };
        let total = clients.len() as u64;
        Ok(Response::new(pb::ListClientsResponse { clients: clients.iter().map(client_to_proto).collect(), total }))
    }

    async fn delete_client(
        &self,
        request: Request<pb::DeleteClientRequest>,
    ) -> Result<Response<pb::DeleteClientResponse>, Status> {
        let by_operator = operator_caller(&request);
        let r = request.into_inner();
        let user =
            by_operator.or(r.requested_by).ok_or_else(|| Status::invalid_argument("requested_by is required"))?;
        let user = WebUser::from(user);
        if !self.delete(&r.client_id, &user).await? {
            return Err(Status::not_found("no such client of yours"));
        }
        Ok(Response::new(pb::DeleteClientResponse {}))
    }

    async fn approve_client(&self, request: Request<pb::ApproveClientRequest>) -> Result<Response<pb::Client>, Status> {
        let user = administrator(&request, request.get_ref().requested_by.as_ref(), "approve clients")?;
        let r = request.into_inner();
        if !self.approve(&r.client_id, &user.username).await? {
            return Err(Status::not_found("no such pending client"));
        }
        match self.get(&r.client_id).await? {
            Some(client) => Ok(Response::new(client_to_proto(&client))),
            None => Err(Status::not_found("no such client")),
        }
    }

    async fn reject_client(
        &self,
        request: Request<pb::RejectClientRequest>,
    ) -> Result<Response<pb::DeleteClientResponse>, Status> {
        let user = administrator(&request, request.get_ref().requested_by.as_ref(), "reject clients")?;
        let r = request.into_inner();
        if !self.reject(&r.client_id, &user.username).await? {
            return Err(Status::not_found("no such pending client"));
        }
        Ok(Response::new(pb::DeleteClientResponse {}))
    }

    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        self.events.list_for_administrators(request).await
    }

    async fn set_client_disabled(
        &self,
        request: Request<pb::SetClientDisabledRequest>,
    ) -> Result<Response<pb::Client>, Status> {
        let user = administrator(&request, request.get_ref().requested_by.as_ref(), "disable or enable clients")?;
        let r = request.into_inner();
        match self.set_disabled(&r.client_id, r.disabled, &user.username).await {
            Ok(Some(client)) => Ok(Response::new(client_to_proto(&client))),
            Ok(None) => Err(Status::not_found("no such client")),
            Err(e) if e.code == ErrorCode::InvalidRequest => {
                Err(Status::failed_precondition(e.description.unwrap_or_default()))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn rotate_client_secret(
        &self,
        request: Request<pb::RotateClientSecretRequest>,
    ) -> Result<Response<pb::RegisterClientResponse>, Status> {
        let user = administrator(&request, request.get_ref().requested_by.as_ref(), "rotate client secrets")?;
        let r = request.into_inner();
        match self.rotate_secret(&r.client_id, &user.username).await {
            Ok(Some(registration)) => Ok(Response::new(registration_to_proto(registration))),
            Ok(None) => Err(Status::not_found("no such client")),
            Err(e) if e.code == ErrorCode::InvalidRequest => {
                Err(Status::failed_precondition(e.description.unwrap_or_default()))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn set_client_policy(
        &self,
        request: Request<pb::SetClientPolicyRequest>,
    ) -> Result<Response<pb::Client>, Status> {
        let by_token_caller = matches!(operator(&request), Some(Operator::Token { .. }));
        let user = administrator(&request, request.get_ref().requested_by.as_ref(), "set client policies")?;
        let r = request.into_inner();
        let policy = r
            .policy
            .map(|p| ClientPolicy::from_proto(p, self.scopes()))
            .transpose()
            .map_err(Status::invalid_argument)?;
        // Else one leaked administrator's token could outlive its client by minting another.
        if by_token_caller && policy.as_ref().is_some_and(|p| p.admin) {
            return Err(Status::permission_denied(
                "an administrator's token cannot make another administrator's client: use the admin certificate or \
                 `nmos-auth admin set-client-policy --admin`",
            ));
        }
        if !self.set_policy(&r.client_id, policy, &user.username).await? {
            return Err(Status::not_found("no such client"));
        }
        match self.get(&r.client_id).await? {
            Some(client) => Ok(Response::new(client_to_proto(&client))),
            None => Err(Status::not_found("no such client")),
        }
    }
}
