//! Every gRPC method, called over real loopback sockets, including its error statuses.
//! These also exercise each service's store on both backends, and the loopback transport
//! (`internal_transport = "loopback"`), which carries the HTTP flows in these tests too.
use nmos_auth_core::config::InternalTransport;
use nmos_auth_core::{ErrorCode, OAuthError};
use nmos_auth_identity::IdentityError;
use nmos_auth_proto as pb;
use nmos_auth_proto::client_registry_client::ClientRegistryClient;
use nmos_auth_proto::identity_client::IdentityClient;
use nmos_auth_proto::keys_client::KeysClient;
use nmos_auth_proto::token_issuer_client::TokenIssuerClient;
use serde_json::json;
use tonic::Code;

use crate::harness::{Backend, TestApp, pyjwt_verify, store_backend_tests};

store_backend_tests!(
    identity_service,
    keys_service,
    client_registry_service,
    token_issuer_service,
    first_sign_up_is_atomic,
    a_setup_code_expires_after_a_day
);

/// Sign-ups racing on a new server: exactly one becomes the administrator, and only with the
/// setup code.
async fn first_sign_up_is_atomic(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let identity = &app.server.identity;
    for code in ["", "0000-0000-0000-0000"] {
        let refused = identity.sign_up("stranger", "a long enough password", code).await.unwrap_err();
        assert!(
            matches!(refused, IdentityError::SetupCodeNeeded),
            "whoever comes first is not the operator: {refused}"
        );
    }
    let code = app.setup_code().await;
    let attempts = (0..6).map(|i| {
        let identity = app.server.identity.clone();
        let code = code.clone();
        tokio::spawn(async move { identity.sign_up(&format!("racer{i}"), "a long enough password", &code).await })
    });
    let mut admins = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(user) => {
                assert!(user.admin);
                admins += 1;
            }
            Err(e) => assert!(matches!(e, IdentityError::SignUpClosed), "sign-up is closed after the first: {e}"),
        }
    }
    assert_eq!(admins, 1);
    assert!(identity.first_administrator_setup().await.unwrap().is_none(), "no more codes once there are users");
}

/// A setup code is good for 24 hours (on a compressed clock: codes made as if earlier): one a
/// day old is refused, one made just under a day ago still works.
async fn a_setup_code_expires_after_a_day(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let identity = &app.server.identity;
    let now = nmos_auth_core::now_unix();
    let stale = identity.first_administrator_setup_at(now - 24 * 3600 - 5).await.unwrap().unwrap();
    let refused = identity.sign_up("operator", "a long enough password", &stale).await.unwrap_err();
    assert!(matches!(refused, IdentityError::SetupCodeNeeded), "a day-old code: {refused}");
    assert!(refused.to_string().contains("good for 24 hours"), "{refused}");
    let recent = identity.first_administrator_setup_at(now - 23 * 3600).await.unwrap().unwrap();
    let user = identity.sign_up("operator", "a long enough password", &recent).await.unwrap();
    assert!(user.admin);
}

fn right(api: &str, access: pb::Access) -> pb::ApiRight {
    pb::ApiRight { api: api.into(), access: access as i32 }
}

fn access_of(user: &pb::User, api: &str) -> pb::Access {
    let r = user.rights.iter().find(|r| r.api == api).expect("every API is listed");
    pb::Access::try_from(r.access).unwrap()
}

async fn identity_service(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.internal_transport = InternalTransport::Loopback).await;
    let mut identity =
        IdentityClient::connect(format!("http://{}", app.server.grpc.expect("loopback transport").identity))
            .await
            .unwrap();
    // The administrative methods are for administrators, whom the gateway names and the identity
    // service checks in its own store; an operator (here, this test) made root one.
    app.server.identity.create_user("root", "root's long password", true, &[], "operator:test").await.unwrap();
    let by = || "root".to_owned();
    let create = |username: &str, access: i32| pb::CreateUserRequest {
        username: username.into(),
        password: "correct horse battery".into(),
        admin: false,
        rights: vec![pb::ApiRight { api: "registration".into(), access }],
        requested_by: by(),
    };
    for requested_by in ["", "nobody", "alice"] {
        let refused =
            identity.create_user(pb::CreateUserRequest { requested_by: requested_by.into(), ..create("x", 2) });
        assert_eq!(refused.await.unwrap_err().code(), Code::PermissionDenied, "{requested_by:?}");
    }

    let alice = identity.create_user(create("alice", pb::Access::Write as i32)).await.unwrap().into_inner();
    assert_eq!(alice.rights.len(), 7);
    assert_eq!(access_of(&alice, "registration"), pb::Access::Write);
    assert_eq!(access_of(&alice, "query"), pb::Access::None);
    assert!(!alice.admin);

    let dup = identity.create_user(create("alice", pb::Access::Read as i32)).await.unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists);
    for bad in [create("has space", 2), create("", 2), create("bob", 0), create("bob", 99)] {
        assert_eq!(identity.create_user(bad).await.unwrap_err().code(), Code::InvalidArgument);
    }
    let short = pb::CreateUserRequest { password: "short".into(), ..create("carol", 2) };
    assert_eq!(identity.create_user(short).await.unwrap_err().code(), Code::InvalidArgument);

    let got = identity.get_user(pb::GetUserRequest { username: "alice".into() }).await.unwrap().into_inner();
    assert_eq!(got, alice);
    let missing = identity.get_user(pb::GetUserRequest { username: "nobody".into() }).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    // alice is no administrator: she may not make herself one.
    let promote = |requested_by: &str| pb::SetAdminRequest {
        username: "alice".into(),
        admin: true,
        requested_by: requested_by.into(),
    };
    assert_eq!(identity.set_admin(promote("alice")).await.unwrap_err().code(), Code::PermissionDenied);
    let admin = identity.set_admin(promote("root")).await.unwrap().into_inner();
    assert!(admin.admin);
    let missing = pb::SetAdminRequest { username: "nobody".into(), admin: true, requested_by: by() };
    assert_eq!(identity.set_admin(missing).await.unwrap_err().code(), Code::NotFound);
    // Nobody locks themselves out: not their own administration, account or existence.
    let own = identity.set_admin(pb::SetAdminRequest { username: "root".into(), admin: false, requested_by: by() });
    assert_eq!(own.await.unwrap_err().code(), Code::FailedPrecondition);
    let own =
        identity.set_disabled(pb::SetDisabledRequest { username: "root".into(), disabled: true, requested_by: by() });
    assert_eq!(own.await.unwrap_err().code(), Code::FailedPrecondition);
    let own = identity.delete_user(pb::DeleteUserRequest { username: "root".into(), requested_by: by() });
    assert_eq!(own.await.unwrap_err().code(), Code::FailedPrecondition);

    let set = pb::SetRightsRequest {
        username: "alice".into(),
        rights: vec![
            right("registration", pb::Access::None),
            right("query", pb::Access::Read),
            right("node", pb::Access::Write),
        ],
        requested_by: by(),
    };
    let changed = identity.set_rights(set).await.unwrap().into_inner();
    assert_eq!(access_of(&changed, "registration"), pb::Access::None);
    assert_eq!(access_of(&changed, "query"), pb::Access::Read);
    assert_eq!(access_of(&changed, "node"), pb::Access::Write);
    let bad_api = pb::SetRightsRequest {
        username: "alice".into(),
        rights: vec![right("admin", pb::Access::Write)],
        requested_by: by(),
    };
    assert_eq!(identity.set_rights(bad_api).await.unwrap_err().code(), Code::InvalidArgument);
    let missing = pb::SetRightsRequest {
        username: "nobody".into(),
        rights: vec![right("query", pb::Access::Read)],
        requested_by: by(),
    };
    assert_eq!(identity.set_rights(missing).await.unwrap_err().code(), Code::NotFound);

    identity.create_user(create("bob", pb::Access::Read as i32)).await.unwrap();
    let users = identity.list_users(pb::ListUsersRequest { requested_by: by() }).await.unwrap().into_inner().users;
    assert_eq!(users.iter().map(|u| u.username.as_str()).collect::<Vec<_>>(), ["alice", "bob", "root"]);
    assert_eq!(access_of(&users[1], "registration"), pb::Access::Read);
    let refused = identity.list_users(pb::ListUsersRequest { requested_by: "bob".into() }).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    let ok = identity
        .verify_password(pb::VerifyPasswordRequest {
            username: "alice".into(),
            password: "correct horse battery".into(),
            client_address: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.username, "alice");
    // A wrong password and an unknown user are indistinguishable.
    let wrong = identity
        .verify_password(pb::VerifyPasswordRequest {
            username: "alice".into(),
            password: "wrong password".into(),
            client_address: String::new(),
        })
        .await
        .unwrap_err();
    let unknown = identity
        .verify_password(pb::VerifyPasswordRequest {
            username: "nobody".into(),
            password: "wrong password".into(),
            client_address: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!((wrong.code(), wrong.message()), (unknown.code(), unknown.message()));
    assert_eq!(wrong.code(), Code::Unauthenticated);

    // A disabled account cannot sign in; a deleted one is gone.
    let off = pb::SetDisabledRequest { username: "alice".into(), disabled: true, requested_by: by() };
    let off = identity.set_disabled(off).await.unwrap();
    assert!(off.into_inner().disabled);
    let refused = identity
        .verify_password(pb::VerifyPasswordRequest {
            username: "alice".into(),
            password: "correct horse battery".into(),
            client_address: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    identity.delete_user(pb::DeleteUserRequest { username: "bob".into(), requested_by: by() }).await.unwrap();
    let gone = identity.delete_user(pb::DeleteUserRequest { username: "bob".into(), requested_by: by() }).await;
    assert_eq!(gone.unwrap_err().code(), Code::NotFound);
    let missing = pb::SetDisabledRequest { username: "bob".into(), disabled: true, requested_by: by() };
    assert_eq!(identity.set_disabled(missing).await.unwrap_err().code(), Code::NotFound);

    // Sign-up is closed once there are users (open_signup is off by default).
    let closed = identity
        .sign_up(pb::SignUpRequest {
            username: "carol".into(),
            password: "carol's password".into(),
            setup_code: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(closed.code(), Code::FailedPrecondition);
}

async fn keys_service(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.internal_transport = InternalTransport::Loopback).await;
    let mut keys =
        KeysClient::connect(format!("http://{}", app.server.grpc.expect("loopback transport").keys)).await.unwrap();
    let jwks = keys.get_jwks(pb::GetJwksRequest::default()).await.unwrap().into_inner();
    assert_eq!(jwks.keys.len(), 1);
    let k = &jwks.keys[0];
    assert_eq!((k.kty.as_str(), k.r#use.as_str(), k.alg.as_str(), k.e.as_str()), ("RSA", "sig", "RS512", "AQAB"));

    let now = nmos_auth_core::now_unix();
    let claims =
        json!({"iss": "https://issuer.example", "sub": "s", "aud": ["x.example.com"], "iat": now, "exp": now + 60});
    let signed =
        keys.sign(pb::SignRequest { claims_json: claims.to_string().into_bytes() }).await.unwrap().into_inner();
    assert_eq!(signed.kid, k.kid);
    let verified = pyjwt_verify(&signed.jws, &app.jwks().await, "https://issuer.example", "x.example.com");
    assert_eq!(verified["claims"]["sub"], "s");

    let verified = keys.verify(pb::VerifyRequest { jws: signed.jws.clone() }).await.unwrap().into_inner();
    assert_eq!(verified.kid, k.kid);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&verified.claims_json).unwrap(), claims);
    let tampered = format!("{}x", signed.jws);
    let refused = keys.verify(pb::VerifyRequest { jws: tampered }).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert_eq!(OAuthError::from_status(&refused).code, ErrorCode::InvalidToken);

    for bad in [&b"not json"[..], b"[1]", b"", b"{\"a\": "] {
        let e = keys.sign(pb::SignRequest { claims_json: bad.to_vec() }).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
    }
}

async fn client_registry_service(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.internal_transport = InternalTransport::Loopback).await;
    let mut clients =
        ClientRegistryClient::connect(format!("http://{}", app.server.grpc.expect("loopback transport").clients))
            .await
            .unwrap();

    // Initial access tokens are an administrator's to hand out.
    let web =
        |username: &str, admin: bool| Some(pb::WebUser { username: username.into(), admin, account_created_at: 0 });
    for requested_by in [None, web("bob", false)] {
        let request = pb::CreateInitialAccessTokenRequest { lifetime_secs: 60, description: "x".into(), requested_by };
        assert_eq!(clients.create_initial_access_token(request).await.unwrap_err().code(), Code::PermissionDenied);
    }
    let iat = clients
        .create_initial_access_token(pb::CreateInitialAccessTokenRequest {
            lifetime_secs: 60,
            description: "grpc".into(),
            requested_by: web("root", true),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(iat.token.len() >= 43);
    assert!(iat.expires_at > nmos_auth_core::now_unix());
    let forever = clients
        .create_initial_access_token(pb::CreateInitialAccessTokenRequest {
            lifetime_secs: 0,
            description: String::new(),
            requested_by: web("root", true),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(forever.expires_at, 0);
    let negative = pb::CreateInitialAccessTokenRequest {
        lifetime_secs: -1,
        description: String::new(),
        requested_by: web("root", true),
    };
    assert_eq!(clients.create_initial_access_token(negative).await.unwrap_err().code(), Code::InvalidArgument);

    let body = json!({"client_name": "gRPC Node", "grant_types": ["client_credentials"], "scope": "events"});
    let registered = clients
        .register_client(pb::RegisterClientRequest {
            body: Some(pb::register_client_request::Body::Json(body.to_string().into_bytes())),
            initial_access_token: forever.token.clone(),
            registered_by: None,
        })
        .await
        .unwrap()
        .into_inner();
    let client = registered.client.unwrap();
    assert_eq!(client.response_types, ["none"]);

    let bad = clients
        .register_client(pb::RegisterClientRequest {
            body: Some(pb::register_client_request::Body::Json(b"{".to_vec())),
            initial_access_token: forever.token.clone(),
            registered_by: None,
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(OAuthError::from_status(&bad).code, ErrorCode::InvalidClientMetadata);
    let empty = clients
        .register_client(pb::RegisterClientRequest {
            body: None,
            initial_access_token: forever.token,
            registered_by: None,
        })
        .await;
    assert_eq!(OAuthError::from_status(&empty.unwrap_err()).code, ErrorCode::InvalidClientMetadata);

    use pb::authenticate_client_request::Credential;
    let auth = |credential| pb::AuthenticateClientRequest { client_id: client.client_id.clone(), credential };
    let ok =
        clients.authenticate_client(auth(Some(Credential::ClientSecretBasic(registered.client_secret.clone())))).await;
    assert_eq!(ok.unwrap().into_inner(), client);
    let wrong =
        clients.authenticate_client(auth(Some(Credential::ClientSecretBasic("nope".into())))).await.unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);
    assert_eq!(OAuthError::from_status(&wrong).code, ErrorCode::InvalidClient);
    let none = clients.authenticate_client(auth(Some(Credential::None(true)))).await.unwrap_err();
    assert_eq!(
        OAuthError::from_status(&none).code,
        ErrorCode::InvalidClient,
        "a confidential client must authenticate"
    );
    assert_eq!(clients.authenticate_client(auth(None)).await.unwrap_err().code(), Code::InvalidArgument);

    let got =
        clients.get_client(pb::GetClientRequest { client_id: client.client_id.clone() }).await.unwrap().into_inner();
    assert_eq!(got, client);
    let missing = clients.get_client(pb::GetClientRequest { client_id: "missing".into() }).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    // Web users register without a token; only administrators may register machine clients.
    let register = |body: serde_json::Value, by| pb::RegisterClientRequest {
        body: Some(pb::register_client_request::Body::Json(body.to_string().into_bytes())),
        initial_access_token: String::new(),
        registered_by: by,
    };
    let code_client = json!({"client_name": "Bob's controller", "redirect_uris": ["https://bob.example.com/cb"]});
    let bobs = clients.register_client(register(code_client.clone(), web("bob", false))).await.unwrap().into_inner();
    assert_eq!(bobs.client.as_ref().unwrap().owner, "bob");
    let refused = clients.register_client(register(body.clone(), web("bob", false))).await.unwrap_err();
    assert_eq!(OAuthError::from_status(&refused).code, ErrorCode::InvalidClientMetadata);
    clients.register_client(register(body, web("root", true))).await.unwrap();
    let list = |owner: &str, pending: bool, requested_by| pb::ListClientsRequest {
        owner: owner.into(),
        pending,
        requested_by,
        ..Default::default()
    };
    let listed = clients.list_clients(list("bob", false, web("bob", false))).await.unwrap().into_inner();
    assert_eq!(listed.clients.len(), 1);
    let listed = clients.list_clients(list("bob", false, web("root", true))).await.unwrap().into_inner();
    assert_eq!(listed.clients.len(), 1, "an administrator sees anyone's");
    for (owner, pending, by) in
        [("bob", false, web("mallory", false)), ("", true, web("bob", false)), ("bob", false, None)]
    {
        let refused = clients.list_clients(list(owner, pending, by)).await.unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied);
    }
    let bob_id = bobs.client.unwrap().client_id;
    // A later account of bob's name (bob's deleted, the name given again) neither lists nor
    // deletes the earlier account's client.
    let later_bob = || {
        let account_created_at = nmos_auth_core::now_unix() + 1;
        Some(pb::WebUser { username: "bob".into(), admin: false, account_created_at })
    };
    let listed = clients.list_clients(list("bob", false, later_bob())).await.unwrap().into_inner();
    assert!(listed.clients.is_empty(), "{listed:?}");
    let not_this_bobs = pb::DeleteClientRequest { client_id: bob_id.clone(), requested_by: later_bob() };
    assert_eq!(clients.delete_client(not_this_bobs).await.unwrap_err().code(), Code::NotFound);
    let not_yours = pb::DeleteClientRequest { client_id: bob_id.clone(), requested_by: web("mallory", false) };
    assert_eq!(clients.delete_client(not_yours).await.unwrap_err().code(), Code::NotFound);
    clients
        .delete_client(pb::DeleteClientRequest { client_id: bob_id.clone(), requested_by: web("bob", false) })
        .await
        .unwrap();
    let gone = clients.get_client(pb::GetClientRequest { client_id: bob_id }).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);

    // Approval: only administrators, only pending clients (there are none in this mode).
    let pending = clients.list_clients(list("", true, web("root", true))).await.unwrap();
    assert!(pending.into_inner().clients.is_empty());
    let reject = |by| pb::RejectClientRequest { client_id: client.client_id.clone(), requested_by: by };
    assert_eq!(clients.reject_client(reject(web("bob", false))).await.unwrap_err().code(), Code::PermissionDenied);
    assert_eq!(
        clients.reject_client(reject(web("root", true))).await.unwrap_err().code(),
        Code::NotFound,
        "not pending"
    );
    let approve = |by| pb::ApproveClientRequest { client_id: client.client_id.clone(), requested_by: by };
    assert_eq!(clients.approve_client(approve(web("bob", false))).await.unwrap_err().code(), Code::PermissionDenied);
    assert_eq!(clients.approve_client(approve(web("root", true))).await.unwrap_err().code(), Code::NotFound);

    // Client policies: administrators only, and only sensible ones.
    let policy = |scope: &str| pb::ClientPolicy {
        scope: scope.into(),
        permissions: vec![],
        audience: vec![],
        admin: false,
        introspect: false,
    };
    let set = |by, p| pb::SetClientPolicyRequest { client_id: client.client_id.clone(), policy: p, requested_by: by };
    let refused = clients.set_client_policy(set(web("bob", false), Some(policy("events")))).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let invalid = clients.set_client_policy(set(web("root", true), Some(policy("bogus")))).await.unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
    let updated = clients.set_client_policy(set(web("root", true), Some(policy("events")))).await.unwrap().into_inner();
    assert_eq!(updated.policy.unwrap().scope, "events");
    let cleared = clients.set_client_policy(set(web("root", true), None)).await.unwrap().into_inner();
    assert!(cleared.policy.is_none());
}

async fn token_issuer_service(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.internal_transport = InternalTransport::Loopback).await;
    let (id, secret) = app.machine_client("registration").await;
    let mut issuer =
        TokenIssuerClient::connect(format!("http://{}", app.server.grpc.expect("loopback transport").token_issuer))
            .await
            .unwrap();
    let request = |auth: Option<pb::client_authentication::Method>| pb::TokenRequest {
        params: vec![pb::TokenParam { name: "grant_type".into(), value: "client_credentials".into() }],
        client_authentication: Some(pb::ClientAuthentication { method: auth }),
        client_address: "127.0.0.1".into(),
    };
    let basic = pb::client_authentication::Method::Basic(pb::BasicCredentials { client_id: id, client_secret: secret });
    let ok = issuer.token(request(Some(basic))).await.unwrap().into_inner();
    assert_eq!((ok.token_type.as_str(), ok.expires_in, ok.scope.as_str()), ("Bearer", 60, "registration"));
    let none = issuer.token(request(None)).await.unwrap_err();
    assert_eq!(OAuthError::from_status(&none).code, ErrorCode::InvalidClient);
}
