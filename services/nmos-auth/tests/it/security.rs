//! Security hardening (issue #14): what an attacker from outside could do to the logs, the
//! sessions, the sign-in, the redirects, the pages and the introspection endpoint.
use serde_json::{Value, json};

use crate::harness::TestApp;

/// A client name, registered without an account in `open` mode, that tries to write a line of
/// its own into the log, to move the cursor of whoever reads it, and to cut the line short.
const FORGED_NAME: &str = "Node\n2026-11-30T00:00:00.000000Z  INFO audit: user signed in \
                           event=\"user_signed_in\" username=forged-admin\r\u{1b}[2J\u{1b}[31mred\0end";

/// Text logs escape outside values (quoted, control characters escaped: CWE-117); JSON logs
/// carry them as JSON strings. Both on the split deployment's real processes and log files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_values_cannot_forge_log_lines() {
    for format in ["text", "json"] {
        let app = TestApp::spawn_split_with_env(&[("NMOS_AUTH_LOG_FORMAT", format)]).await;
        let registered = app
            .register(json!({
                "client_name": FORGED_NAME, "grant_types": ["client_credentials"],
                "response_types": ["none"], "scope": "registration",
            }))
            .await;
        assert_eq!(registered["client_name"], FORGED_NAME, "the name is kept as registered");
        let logs = app.deployment_logs();
        for raw in ['\r', '\u{1b}', '\0'] {
            assert!(!logs.contains(raw), "{format}: a raw {raw:?} reached the log:\n{logs}");
        }
        let lines = logs.lines().filter(|l| !l.is_empty() && !l.starts_with("--- "));
        match format {
            "text" => {
                let forged: Vec<_> = lines
                    .filter(|l| !l.starts_with(|c: char| c.is_ascii_digit()) || l.starts_with("2026-11-30T00:00:00"))
                    .collect();
                assert!(forged.is_empty(), "lines that are not the server's own: {forged:#?}");
                let line = logs.lines().find(|l| l.contains("client registered")).expect("the audit line");
                // The whole name is one quoted value, each unsafe character escaped.
                let escaped: String = FORGED_NAME
                    .chars()
                    .flat_map(|c| {
                        let plain = c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ';
                        if plain { c.to_string() } else { c.escape_default().to_string() }.chars().collect::<Vec<_>>()
                    })
                    .collect();
                assert!(line.contains(&format!(" client_name=\"{escaped}\"")), "{line}\nwanted {escaped}");
            }
            _ => {
                let entries: Vec<Value> = lines
                    .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}")))
                    .collect();
                let audit = entries
                    .iter()
                    .find(|e| e["fields"]["event"] == "client_registered")
                    .unwrap_or_else(|| panic!("no audit entry in {entries:#?}"));
                assert_eq!(audit["fields"]["client_name"], FORGED_NAME, "the value as it came: {audit}");
                assert!(!entries.iter().any(|e| e["fields"]["username"] == "forged-admin"), "{entries:#?}");
            }
        }
    }
}
