//! Everything an operator set up survives a restart, and tokens issued before it still verify.
use nmos_auth_core::{Access, NmosApi};

use crate::harness::{Backend, ExpectJson, TestApp, backend_tests, pyjwt_verify};

backend_tests!(state_survives_a_restart);

async fn state_survives_a_restart(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (id, secret) = app.machine_client("registration").await;
    let before = app.token(&id, &secret, &[("grant_type", "client_credentials")]).await.expect_json(200).await;
    let old_token = before["access_token"].as_str().unwrap().to_owned();
    let jwks_before = app.jwks().await;
    app.server
        .identity
        .create_user("operator", "a long password", true, &[(NmosApi::Query, Access::Read)], "operator:test")
        .await
        .unwrap();
    let issuer = app.issuer();

    let app = app.restart().await;

    let jwks_after = app.jwks().await;
    assert_eq!(jwks_before, jwks_after, "the same signing key, same kid");
    pyjwt_verify(&old_token, &jwks_after, &issuer, "*.example.com");

    let r = app.token(&id, &secret, &[("grant_type", "client_credentials")]).await;
    assert_eq!(r.status(), 200, "the client is still registered with the same secret");

    let user = app.server.identity.verify_password("operator", "a long password", "").await.unwrap();
    assert!(user.admin);
    assert_eq!(user.rights.get(NmosApi::Query), Access::Read);
    assert_eq!(app.server.token_issuer.recent_audit(10).await.unwrap().len(), 2, "the audit log is kept");
}
