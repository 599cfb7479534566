//! RFC 7591 registration (and RFC 7592 update) metadata, as JSON from anyone: whatever is
//! accepted must hold the rules the rest of the server relies on.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nmos_auth_client_registry::metadata::{Rules, parse};
use nmos_auth_core::config::LegacyGrants;
use nmos_auth_core::{RedirectUri, Scope};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, json)) = data.split_first() else { return };
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(json) else { return };
    let scopes = Scope::all();
    let rules = Rules {
        scopes: &scopes,
        legacy: LegacyGrants { password: flags & 1 != 0, implicit: flags & 2 != 0 },
        plain_http: flags & 4 != 0,
    };
    if let Ok(metadata) = parse(&body, &rules) {
        for uri in &metadata.redirect_uris {
            let again = RedirectUri::parse(uri.as_str()).expect("an accepted redirect URI parses again");
            assert!(again.is(uri.as_str()) && again.allowed(rules.plain_http).is_ok());
            assert!(!uri.as_str().contains('@') && !uri.as_str().contains('#'));
        }
        let scope = Scope::parse(&metadata.scope).expect("an accepted scope parses again");
        assert!(scope.is_subset_of(&scopes));
        // What is stored reads back as itself.
        let stored = serde_json::to_value(&metadata).expect("metadata serialises");
        assert_eq!(
            serde_json::from_value::<nmos_auth_client_registry::metadata::ClientMetadata>(stored).ok().as_ref(),
            Some(&metadata)
        );
    }
});
