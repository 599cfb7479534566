//! The `nmos-auth` command as an operator runs it: admin commands and `serve`.
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{
    Backend, ExpectJson, TempDir, TestApp, assert_oauth_error, free_listener, http_client, nmos_auth,
    store_backend_tests, test_config,
};

store_backend_tests!(admin_commands, serve_command_and_config_precedence);

fn run(command: &mut Command, stdin: &str) -> Output {
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).unwrap()
}

async fn admin_commands(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = |args: &[&str], stdin: &str| {
        let mut c = nmos_auth(&app.config);
        c.arg("admin").args(args);
        run(&mut c, stdin)
    };

    // The initial access token is the last line printed, and it registers a client.
    let out = admin(&["create-initial-access-token", "--lifetime", "600", "--description", "plant A"], "");
    let token = stdout(&out).lines().last().unwrap().to_owned();
    let r = app
        .http
        .post(app.auth_url("register"))
        .bearer_auth(&token)
        .json(&json!({"client_name": "CLI Node", "grant_types": ["client_credentials"], "scope": "registration"}))
        .send()
        .await
        .unwrap();
    let registered = r.expect_json(201).await;
    let (node, secret) = (registered["client_id"].as_str().unwrap(), registered["client_secret"].as_str().unwrap());

    // Clients: searched, disabled (no tokens) and enabled again, and a new secret printed once.
    let cc = [("grant_type", "client_credentials")];
    let out = admin(&["list-clients", "--kind", "machine", "--name", "cli"], "");
    assert!(stdout(&out).contains(&format!("{node} \"CLI Node\" machine approved")), "{}", stdout(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 of 1 matching clients"));
    let out = admin(&["disable-client", node], "");
    assert!(stdout(&out).contains(&format!("disabled {node}; 0 refresh-token families revoked")), "{}", stdout(&out));
    assert_oauth_error(app.token(node, secret, &cc).await, 401, "invalid_client").await;
    assert!(stdout(&admin(&["list-clients", "--status", "disabled"], "")).contains(node));
    assert!(stdout(&admin(&["enable-client", node], "")).contains("enabled"));
    app.token(node, secret, &cc).await.expect_json(200).await;
    let out = admin(&["rotate-client-secret", node], "");
    let new_secret = stdout(&out).lines().last().unwrap().to_owned();
    assert_oauth_error(app.token(node, secret, &cc).await, 401, "invalid_client").await;
    app.token(node, &new_secret, &cc).await.expect_json(200).await;

    // Users: add (password on stdin, never in argv), make admin, set rights, list.
    let out = admin(&["add-user", "operator", "--rights", "registration=write,query=read"], "a long password\n");
    assert!(stdout(&out).contains("registration=write"));
    let out = admin(&["make-admin", "operator"], "");
    assert!(stdout(&out).contains("(admin)"));
    let out = admin(&["set-rights", "operator", "--rights", "query=none,node=write"], "");
    let line = stdout(&out);
    assert!(
        line.contains("registration=write") && line.contains("query=none") && line.contains("node=write"),
        "{line}"
    );
    let user = app.server.identity.verify_password("operator", "a long password", "").await.unwrap();
    assert!(user.admin);
    let out = admin(&["list-users"], "");
    assert_eq!(stdout(&out).lines().count(), 1);
    let out = admin(&["make-admin", "operator", "--revoke"], "");
    assert!(!stdout(&out).contains("(admin)"));

    // Failures say what is wrong and exit non-zero.
    for (args, stdin, needle) in [
        (&["add-user", "operator"][..], "another password\n", "taken"),
        (&["add-user", "newbie"][..], "short\n", "8 to 1024"),
        (&["set-rights", "operator", "--rights", "query=admin"][..], "", "unknown access level"),
        (&["set-rights", "nobody", "--rights", "query=read"][..], "", "no user"),
        (&["create-initial-access-token", "--lifetime=-5"][..], "", "negative"),
        (&["disable-client", "no-such-client-0000000000"][..], "", "no such client"),
        (&["list-clients", "--kind", "robot"][..], "", "invalid value"),
    ] {
        let out = admin(args, stdin);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }

    // Help lists every command.
    let help = stdout(&run(nmos_auth(&app.config).arg("--help"), ""));
    assert!(help.contains("serve") && help.contains("admin"));
    let help = stdout(&run(nmos_auth(&app.config).args(["admin", "--help"]), ""));
    for command in [
        "create-initial-access-token",
        "add-user",
        "make-admin",
        "set-rights",
        "list-users",
        "list-clients",
        "disable-client",
        "enable-client",
        "rotate-client-secret",
    ] {
        assert!(help.contains(command), "{command} missing from help");
    }

    // A bad setting stops start-up with exit status 2 and a message.
    let out = run(nmos_auth(&app.config).args(["--access-token-lifetime", "5", "serve"]), "");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("between 30 and 3600"));
}

/// `nmos-auth config`: every setting, its effective value and where it came from; each setting
/// is a flag and a variable (the key rotation settings were neither once), secrets only
/// variables, and never shown.
#[test]
fn config_command_shows_every_setting_and_where_it_came_from() {
    let dir = TempDir::new("config");
    let file = dir.path().join("nmos-auth.toml");
    std::fs::write(&file, "key_retire_grace = 7200\nmdns = false\n").unwrap();
    let config = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_nmos-auth"));
        c.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
        c
    };
    let out = config()
        .arg("--config")
        .arg(&file)
        .env("NMOS_AUTH_KEY_PUBLISH_LEAD", "7200")
        .env("NMOS_AUTH_MDNS", "true")
        .env("NMOS_AUTH_COOKIE_KEY", "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I=")
        .args(["config", "--key-rotation-period", "86400", "--internal-transport", "loopback"])
        .output()
        .unwrap();
    let shown = stdout(&out);
    for line in [
        "key_publish_lead = 7200  # environment NMOS_AUTH_KEY_PUBLISH_LEAD".to_owned(),
        "key_rotation_period = 86400  # flag --key-rotation-period".to_owned(),
        "internal_transport = \"loopback\"  # flag --internal-transport".to_owned(),
        format!("key_retire_grace = 7200  # file {}", file.display()),
        "mdns = true  # environment NMOS_AUTH_MDNS".to_owned(),
        "access_token_lifetime = 60  # default".to_owned(),
        "# cookie_key is set (a secret, not shown)  # environment NMOS_AUTH_COOKIE_KEY".to_owned(),
        "# public_url is unset: from `listen`  # default".to_owned(),
    ] {
        assert!(shown.lines().any(|l| l == line), "no line {line:?} in:\n{shown}");
    }
    assert!(!shown.contains("c2VjcmV0"), "a secret is never shown");
    for setting in nmos_auth_core::config::SETTINGS {
        assert!(shown.contains(&format!("{} ", setting.name)), "{} is not shown", setting.name);
    }
    // The flags and variables of the key schedule reach the configuration that is checked.
    let out = config().args(["config", "--key-publish-lead", "60", "--key-rotation-period", "30"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("key_publish_lead must be shorter"));
    // A secret is no flag; a value that does not parse names its flag or variable.
    let out = config().args(["config", "--database-url", "postgres://x"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let out = config().arg("config").env("NMOS_AUTH_HOUSEKEEPING_BATCH", "many").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("NMOS_AUTH_HOUSEKEEPING_BATCH"));
}

/// Starts `nmos-auth serve` and returns it with the metadata it serves.
async fn serve(mut command: Command, port: u16) -> (std::process::Child, Value) {
    let mut child = command.arg("serve").stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let http = http_client();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let url = format!("http://127.0.0.1:{port}/.well-known/oauth-authorization-server");
        if let Ok(r) = http.get(&url).send().await {
            return (child, r.expect_json(200).await);
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("serve exited with {status}: {err}");
        }
        assert!(Instant::now() < deadline, "serve did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn stop(child: std::process::Child) -> String {
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "serve did not shut down cleanly: {stderr}");
    stderr
}

async fn serve_command_and_config_precedence(backend: Backend) {
    let dir = TempDir::new("serve");
    let config = test_config(backend, dir.path()).await;
    let config_file = dir.path().join("nmos-auth.toml");
    std::fs::write(&config_file, "public_url = \"http://from-file.example:1\"\naccess_token_lifetime = 120\n").unwrap();
    let port = free_listener().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");

    // File, then environment on top.
    let mut c = nmos_auth(&config);
    c.args(["--listen", &listen])
        .env("NMOS_AUTH_CONFIG", &config_file)
        .env("NMOS_AUTH_PUBLIC_URL", "http://from-env.example:2");
    let (child, metadata) = serve(c, port).await;
    assert_eq!(metadata["issuer"], "http://from-env.example:2/x-nmos/auth/v1.0");
    let stderr = stop(child);
    assert!(stderr.contains("plain HTTP"), "a warning says HTTP is for development: {stderr}");
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&config.data_dir.join("key-encryption-key")), 0o600, "the key-encryption key is private");
    assert_eq!(mode(&config.data_dir), 0o700, "the data directory is private");

    // A flag beats both; the data survives (same key in the JWKS).
    let mut c = nmos_auth(&config);
    c.args(["--listen", &listen, "--config"])
        .arg(&config_file)
        .env("NMOS_AUTH_PUBLIC_URL", "http://from-env.example:2")
        .args(["--public-url", "http://from-flag.example:3"]);
    let (child, metadata) = serve(c, port).await;
    assert_eq!(metadata["issuer"], "http://from-flag.example:3/x-nmos/auth/v1.0");
    let jwks = http_client()
        .get(format!("http://{listen}/x-nmos/auth/v1.0/jwks"))
        .send()
        .await
        .unwrap()
        .expect_json(200)
        .await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    stop(child);
}
