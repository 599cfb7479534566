//! HTTP details shared by the routes: OAuth error responses, form bodies, Authorization headers.
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use nmos_auth_core::{ErrorCode, OAuthError};
use percent_encoding::percent_decode;
use serde_json::json;

/// An OAuth error as an HTTP response: RFC 6749 §5.2 / RFC 7591 §3.2.2 JSON, no caching.
pub struct OAuthErrorResponse {
    pub error: OAuthError,
    pub status: StatusCode,
    /// `WWW-Authenticate` challenge, for 401s.
    pub challenge: Option<String>,
}

impl OAuthErrorResponse {
    pub fn with_challenge(error: OAuthError, challenge: Option<String>) -> OAuthErrorResponse {
        OAuthErrorResponse { status: status_for(error.code), error, challenge }
    }
}

impl From<OAuthError> for OAuthErrorResponse {
    fn from(error: OAuthError) -> Self {
        OAuthErrorResponse::with_challenge(error, None)
    }
}

pub fn status_for(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidClient | ErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
        ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

impl IntoResponse for OAuthErrorResponse {
    fn into_response(self) -> Response {
        nmos_auth_core::telemetry::oauth_error(self.error.code.as_str());
        let mut body = json!({"error": self.error.code.as_str()});
        if let Some(d) = &self.error.description {
            body["error_description"] = json!(d);
        }
        let mut response = (self.status, no_store(), Json(body)).into_response();
        if let Some(challenge) = self.challenge
            && let Ok(value) = HeaderValue::from_str(&challenge)
        {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
        }
        if self.error.code == ErrorCode::TemporarilyUnavailable {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// `Cache-Control: no-store` and `Pragma: no-cache`, for responses that carry credentials.
pub fn no_store() -> [(header::HeaderName, HeaderValue); 2] {
    [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (header::PRAGMA, HeaderValue::from_static("no-cache")),
    ]
}

/// The body, or the OAuth error for a body that is too large or could not be read.
pub fn body(body: Result<Bytes, BytesRejection>, code: ErrorCode) -> Result<Bytes, OAuthErrorResponse> {
    body.map_err(|rejection| {
        let (status, description) = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            (StatusCode::PAYLOAD_TOO_LARGE, "the request body is too large")
        } else {
            (StatusCode::BAD_REQUEST, "the request body could not be read")
        };
        OAuthErrorResponse { error: OAuthError::new(code, description), status, challenge: None }
    })
}

/// The media type of the request, lower-cased, without parameters.
pub fn content_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
}

/// Decodes one `application/x-www-form-urlencoded` component; `None` if it is not UTF-8.
fn form_decode(s: &str) -> Option<String> {
    let plus_as_space = s.replace('+', " ");
    percent_decode(plus_as_space.as_bytes()).decode_utf8().ok().map(|c| c.into_owned())
}

/// Parses a form body strictly: invalid UTF-8, raw or percent-encoded, is an error rather
/// than silently replaced.
pub fn parse_form(body: &[u8]) -> Option<Vec<(String, String)>> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            Some((form_decode(name)?, form_decode(value)?))
        })
        .collect()
}

/// Parses a `multipart/form-data` body of text fields (RFC 7578), which some legacy clients
/// (`curl -F`) send to the token endpoint. `None` if it is malformed or not UTF-8.
pub fn parse_multipart(content_type: &str, body: &[u8]) -> Option<Vec<(String, String)>> {
    let boundary = content_type.split(';').filter_map(|p| p.trim().strip_prefix("boundary=")).next()?.trim_matches('"');
    let text = std::str::from_utf8(body).ok()?;
    let delimiter = format!("--{boundary}");
    let mut fields = Vec::new();
    for part in text.split(delimiter.as_str()).skip(1) {
        if part.starts_with("--") {
            break;
        }
        let part = part.strip_prefix("\r\n")?;
        let (head, value) = part.split_once("\r\n\r\n")?;
        let disposition = head.lines().find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))?;
        let name = disposition.split(';').find_map(|p| p.trim().strip_prefix("name="))?.trim_matches('"');
        fields.push((name.to_owned(), value.strip_suffix("\r\n")?.to_owned()));
    }
    Some(fields)
}

/// What the Authorization header of a request holds.
pub enum Authorization {
    Absent,
    /// RFC 6749 §2.3.1: both parts were form-urlencoded before base64.
    Basic {
        user: String,
        password: String,
    },
    Bearer(String),
    /// A header we could not make sense of.
    Garbled,
}

pub fn authorization(headers: &HeaderMap) -> Authorization {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Authorization::Absent;
    };
    let Ok(value) = value.to_str() else {
        return Authorization::Garbled;
    };
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = STANDARD.decode(rest).ok().and_then(|b| String::from_utf8(b).ok());
        let Some((user, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
            return Authorization::Garbled;
        };
        match (form_decode(user), form_decode(password)) {
            (Some(user), Some(password)) if !user.is_empty() => Authorization::Basic { user, password },
            _ => Authorization::Garbled,
        }
    } else if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() && !rest.contains(' ') {
        Authorization::Bearer(rest.to_owned())
    } else {
        Authorization::Garbled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        // "a%3Ab:s+%2F" -> user "a:b", password "s /"
        let encoded = STANDARD.encode("a%3Ab:s+%2F");
        match authorization(&headers(&format!("Basic {encoded}"))) {
            Authorization::Basic { user, password } => {
                assert_eq!((user.as_str(), password.as_str()), ("a:b", "s /"))
            }
            _ => panic!("not parsed as Basic"),
        }
        assert!(matches!(authorization(&headers("Basic !!!")), Authorization::Garbled));
        assert!(matches!(
            authorization(&headers(&format!("Basic {}", STANDARD.encode("nocolon")))),
            Authorization::Garbled
        ));
        assert!(matches!(authorization(&headers("Digest x")), Authorization::Garbled));
        assert!(matches!(authorization(&headers("Bearer abc")), Authorization::Bearer(t) if t == "abc"));
        assert!(matches!(authorization(&HeaderMap::new()), Authorization::Absent));
    }

    #[test]
    fn forms_are_decoded_strictly() {
        assert_eq!(
            parse_form(b"grant_type=client_credentials&scope=registration+events").unwrap(),
            vec![("grant_type".into(), "client_credentials".into()), ("scope".into(), "registration events".into())]
        );
        assert!(parse_form(b"scope=%FF").is_none());
        assert!(parse_form(b"scope=\xff").is_none());
    }

    #[test]
    fn multipart_text_fields() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"grant_type\"\r\n\r\npassword\r\n--XyZ\r\ncontent-disposition: form-data; name=\"scope\"\r\n\r\nprofile\r\n--XyZ--\r\n";
        let fields = parse_multipart("multipart/form-data; boundary=XyZ", body).unwrap();
        assert_eq!(fields, vec![("grant_type".into(), "password".into()), ("scope".into(), "profile".into())]);
        assert!(parse_multipart("multipart/form-data", body).is_none());
        assert!(parse_multipart("multipart/form-data; boundary=XyZ", b"--XyZ\r\ngarbage").is_none());
    }
}
