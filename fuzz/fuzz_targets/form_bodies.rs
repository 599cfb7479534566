//! The token, revocation, introspection and authorize endpoints' inputs: form bodies
//! (urlencoded and multipart), the Authorization header, and the parameters the token issuer
//! reads from them.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nmos_auth_gateway::{Authorization, authorization, parse_form, parse_multipart};
use nmos_auth_token_issuer::Params;

fuzz_target!(|data: &[u8]| {
    if let Some(pairs) = parse_form(data) {
        // What was read, encoded again, reads back the same: nothing is lost or invented.
        let encoded = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&pairs).finish();
        let again = parse_form(encoded.as_bytes()).expect("an encoded form parses");
        let kept: Vec<_> = pairs.iter().filter(|(n, v)| !(n.is_empty() && v.is_empty())).cloned().collect();
        assert_eq!(again.iter().filter(|(n, v)| !(n.is_empty() && v.is_empty())).cloned().collect::<Vec<_>>(), kept);
        if let Ok(params) = Params::new(pairs.clone()) {
            for (name, value) in &pairs {
                assert_eq!(params.get(name), Some(value.as_str()).filter(|v| !v.is_empty()));
            }
        }
    }
    // The first line is the Content-Type, the rest the body.
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    if let Ok(content_type) = std::str::from_utf8(&data[..split]) {
        let _ = parse_multipart(content_type, data.get(split + 1..).unwrap_or_default());
    }
    if let Ok(value) = http::HeaderValue::from_bytes(data) {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, value);
        if let Authorization::Basic { user, .. } = authorization(&headers) {
            assert!(!user.is_empty(), "Basic credentials always name a client");
        }
    }
});
