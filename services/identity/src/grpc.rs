//! gRPC transport of the identity service: proto <-> domain, nothing else.
use nmos_auth_core::operator::operator;
use nmos_auth_core::{Access, NmosApi};
use nmos_auth_proto as pb;
use nmos_auth_proto::identity_server::Identity;
use tonic::{Request, Response, Status};

use crate::store::UserRecord;
use crate::{IdentityError, IdentityService};

#[tonic::async_trait]
impl Identity for IdentityService {
    async fn create_user(&self, request: Request<pb::CreateUserRequest>) -> Result<Response<pb::User>, Status> {
        let operator = operator(&request);
        let r = request.into_inner();
        let by = self.administrator(operator.as_ref(), &r.requested_by).await?;
        let rights = rights_from_proto(&r.rights)?;
        let user = self.create_user(&r.username, &r.password, r.admin, &rights, &by).await?;
        Ok(Response::new(to_proto(&user)))
    }

    async fn get_user(&self, request: Request<pb::GetUserRequest>) -> Result<Response<pb::User>, Status> {
        let user = self.get_user(&request.into_inner().username).await?;
        Ok(Response::new(to_proto(&user)))
    }

    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let operator = operator(&request);
        let r = request.into_inner();
        // Whether the named user is an administrator is this service's to say.
        let asking = r.requested_by.as_ref().map(|u| u.username.as_str()).unwrap_or_default();
        self.administrator(operator.as_ref(), asking).await?;
        self.events().list_rpc(r).await
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        let operator = operator(&request);
        self.administrator(operator.as_ref(), &request.into_inner().requested_by).await?;
        let users = self.list_users().await?;
        Ok(Response::new(pb::ListUsersResponse { users: users.iter().map(to_proto).collect() }))
    }

    async fn set_admin(&self, request: Request<pb::SetAdminRequest>) -> Result<Response<pb::User>, Status> {
        let operator = operator(&request);
        let r = request.into_inner();
        let by = self.administrator(operator.as_ref(), &r.requested_by).await?;
        let user = self.set_admin(&r.username, r.admin, &by).await?;
        Ok(Response::new(to_proto(&user)))
    }

    async fn set_rights(&self, request: Request<pb::SetRightsRequest>) -> Result<Response<pb::User>, Status> {
        let operator = operator(&request);
        let r = request.into_inner();
        let by = self.administrator(operator.as_ref(), &r.requested_by).await?;
        let user = self.set_rights(&r.username, &rights_from_proto(&r.rights)?, &by).await?;
        Ok(Response::new(to_proto(&user)))
    }

    async fn set_disabled(&self, request: Request<pb::SetDisabledRequest>) -> Result<Response<pb::User>, Status> {
        let operator = operator(&request);
        let r = request.into_inner();
        let by = self.administrator(operator.as_ref(), &r.requested_by).await?;
        let user = self.set_disabled(&r.username, r.disabled, &by).await?;
        Ok(Response::new(to_proto(&user)))
    }

    async fn delete_user(
        &self,
        request: Request<pb::DeleteUserRequest>,
    ) -> Result<Response<pb::DeleteUserResponse>, Status> {
        let operator = operator(&request);
        let r = request.into_inner();
        let by = self.administrator(operator.as_ref(), &r.requested_by).await?;
        self.delete_user(&r.username, &by).await?;
        Ok(Response::new(pb::DeleteUserResponse {}))
    }

    async fn sign_up(&self, request: Request<pb::SignUpRequest>) -> Result<Response<pb::User>, Status> {
        let r = request.into_inner();
        let user = self.sign_up(&r.username, &r.password, &r.setup_code).await?;
        Ok(Response::new(to_proto(&user)))
    }

    async fn verify_password(&self, request: Request<pb::VerifyPasswordRequest>) -> Result<Response<pb::User>, Status> {
        let r = request.into_inner();
        let user = self.verify_password(&r.username, &r.password, &r.client_address).await?;
        Ok(Response::new(to_proto(&user)))
    }

    async fn start_session(
        &self,
        request: Request<pb::StartSessionRequest>,
    ) -> Result<Response<pb::StartSessionResponse>, Status> {
        let session_id = self.start_session(&request.into_inner().username).await?;
        Ok(Response::new(pb::StartSessionResponse { session_id }))
    }

    async fn check_session(&self, request: Request<pb::CheckSessionRequest>) -> Result<Response<pb::User>, Status> {
        let user = self.check_session(&request.into_inner().session_id).await?;
        Ok(Response::new(to_proto(&user)))
    }

    async fn end_session(
        &self,
        request: Request<pb::EndSessionRequest>,
    ) -> Result<Response<pb::EndSessionResponse>, Status> {
        self.end_session(&request.into_inner().session_id).await?;
        Ok(Response::new(pb::EndSessionResponse {}))
    }

    async fn end_user_sessions(
        &self,
        request: Request<pb::EndUserSessionsRequest>,
    ) -> Result<Response<pb::EndUserSessionsResponse>, Status> {
        let operator = operator(&request);
        let r = request.into_inner();
        let by = self.administrator(operator.as_ref(), &r.requested_by).await?;
        let ended = self.end_sessions(&r.username, &by).await?;
        Ok(Response::new(pb::EndUserSessionsResponse { ended }))
    }

    async fn set_password(
        &self,
        request: Request<pb::SetPasswordRequest>,
    ) -> Result<Response<pb::SetPasswordResponse>, Status> {
        let operator = operator(&request);
        let r = request.into_inner();
        // Your own, with your current password; anyone's, as an administrator.
        let (current, by) = if !r.current_password.is_empty() && operator.is_none() && r.requested_by == r.username {
            (Some(r.current_password.as_str()), r.username.clone())
        } else {
            (None, self.administrator(operator.as_ref(), &r.requested_by).await?)
        };
        self.set_password(&r.username, &r.new_password, current, &by).await?;
        Ok(Response::new(pb::SetPasswordResponse {}))
    }
}

fn rights_from_proto(rights: &[pb::ApiRight]) -> Result<Vec<(NmosApi, Access)>, IdentityError> {
    rights
        .iter()
        .map(|r| {
            let api = NmosApi::parse(&r.api)
                .ok_or_else(|| IdentityError::Invalid(format!("unknown NMOS API {:?}", r.api)))?;
            let access = Access::from_proto(r.access)
                .ok_or_else(|| IdentityError::Invalid("access must be NONE, READ or WRITE".into()))?;
            Ok((api, access))
        })
        .collect()
}

fn to_proto(user: &UserRecord) -> pb::User {
    pb::User {
        username: user.username.clone(),
        admin: user.admin,
        disabled: user.disabled,
        rights: user.rights.to_proto(),
        created_at: user.created_at,
    }
}
