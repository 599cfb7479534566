//! Every gRPC method, called over real loopback sockets, including its error statuses.
//! These also exercise each service's store on both backends, and the loopback transport
//! (`internal_transport = "loopback"`), which carries the HTTP flows in these tests too.
use nmos_auth_core::config::InternalTransport;
use nmos_auth_core::{ErrorCode, OAuthError};
use nmos_auth_proto as pb;
use nmos_auth_proto::client_registry_client::ClientRegistryClient;
use nmos_auth_proto::identity_client::IdentityClient;
use nmos_auth_proto::keys_client::KeysClient;
use nmos_auth_proto::token_issuer_client::TokenIssuerClient;
use serde_json::json;
use tonic::Code;

use crate::harness::{Backend, TestApp, backend_tests, pyjwt_verify};

backend_tests!(identity_service, keys_service, client_registry_service, token_issuer_service);

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
    let create = |username: &str, access: i32| pb::CreateUserRequest {
        username: username.into(),
        password: "correct horse battery".into(),
        admin: false,
        rights: vec![pb::ApiRight { api: "registration".into(), access }],
    };

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

    let admin =
        identity.set_admin(pb::SetAdminRequest { username: "alice".into(), admin: true }).await.unwrap().into_inner();
    assert!(admin.admin);
    let missing = identity.set_admin(pb::SetAdminRequest { username: "nobody".into(), admin: true }).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    let set = pb::SetRightsRequest {
        username: "alice".into(),
        rights: vec![
            right("registration", pb::Access::None),
            right("query", pb::Access::Read),
            right("node", pb::Access::Write),
        ],
    };
    let changed = identity.set_rights(set).await.unwrap().into_inner();
    assert_eq!(access_of(&changed, "registration"), pb::Access::None);
    assert_eq!(access_of(&changed, "query"), pb::Access::Read);
    assert_eq!(access_of(&changed, "node"), pb::Access::Write);
    let bad_api = pb::SetRightsRequest { username: "alice".into(), rights: vec![right("admin", pb::Access::Write)] };
    assert_eq!(identity.set_rights(bad_api).await.unwrap_err().code(), Code::InvalidArgument);
    let missing = pb::SetRightsRequest { username: "nobody".into(), rights: vec![right("query", pb::Access::Read)] };
    assert_eq!(identity.set_rights(missing).await.unwrap_err().code(), Code::NotFound);

    identity.create_user(create("bob", pb::Access::Read as i32)).await.unwrap();
    let users = identity.list_users(pb::ListUsersRequest {}).await.unwrap().into_inner().users;
    assert_eq!(users.iter().map(|u| u.username.as_str()).collect::<Vec<_>>(), ["alice", "bob"]);
    assert_eq!(access_of(&users[1], "registration"), pb::Access::Read);

    let ok = identity
        .verify_password(pb::VerifyPasswordRequest {
            username: "alice".into(),
            password: "correct horse battery".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.username, "alice");
    // A wrong password and an unknown user are indistinguishable.
    let wrong = identity
        .verify_password(pb::VerifyPasswordRequest { username: "alice".into(), password: "wrong password".into() })
        .await
        .unwrap_err();
    let unknown = identity
        .verify_password(pb::VerifyPasswordRequest { username: "nobody".into(), password: "wrong password".into() })
        .await
        .unwrap_err();
    assert_eq!((wrong.code(), wrong.message()), (unknown.code(), unknown.message()));
    assert_eq!(wrong.code(), Code::Unauthenticated);
}

async fn keys_service(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.internal_transport = InternalTransport::Loopback).await;
    let mut keys =
        KeysClient::connect(format!("http://{}", app.server.grpc.expect("loopback transport").keys)).await.unwrap();
    let jwks = keys.get_jwks(pb::GetJwksRequest {}).await.unwrap().into_inner();
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

    let iat = clients
        .create_initial_access_token(pb::CreateInitialAccessTokenRequest {
            lifetime_secs: 60,
            description: "grpc".into(),
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
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(forever.expires_at, 0);
    let negative = pb::CreateInitialAccessTokenRequest { lifetime_secs: -1, description: String::new() };
    assert_eq!(clients.create_initial_access_token(negative).await.unwrap_err().code(), Code::InvalidArgument);

    let body = json!({"client_name": "gRPC Node", "grant_types": ["client_credentials"], "scope": "events"});
    let registered = clients
        .register_client(pb::RegisterClientRequest {
            body: Some(pb::register_client_request::Body::Json(body.to_string().into_bytes())),
            initial_access_token: forever.token.clone(),
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
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(OAuthError::from_status(&bad).code, ErrorCode::InvalidClientMetadata);
    let empty =
        clients.register_client(pb::RegisterClientRequest { body: None, initial_access_token: forever.token }).await;
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
    };
    let basic = pb::client_authentication::Method::Basic(pb::BasicCredentials { client_id: id, client_secret: secret });
    let ok = issuer.token(request(Some(basic))).await.unwrap().into_inner();
    assert_eq!((ok.token_type.as_str(), ok.expires_in, ok.scope.as_str()), ("Bearer", 60, "registration"));
    let none = issuer.token(request(None)).await.unwrap_err();
    assert_eq!(OAuthError::from_status(&none).code, ErrorCode::InvalidClient);
}
