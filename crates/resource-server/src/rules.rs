//! The IS-10 rules that do not need a key: audience matching and the x-nmos path claims.
use serde_json::Value;

/// Whether an `aud` entry covers `host` (our FQDN), labels compared one by one with `*`
/// standing for any one label, as nmos-cpp matches them; `*` alone covers every host. A scheme
/// or port in the entry is ignored.
pub fn audience_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.split("://").last().unwrap_or(pattern);
    // An IPv6 literal (`[::1]`, with or without brackets on either side) matches only itself.
    if let Some(literal) = pattern.strip_prefix('[') {
        let literal = literal.split(']').next().unwrap_or_default();
        return literal.eq_ignore_ascii_case(host.trim_start_matches('[').trim_end_matches(']'));
    }
    let pattern = pattern.split(['/', ':']).next().unwrap_or(pattern).trim_end_matches('.');
    let host = host.trim_end_matches('.');
    if pattern == "*" {
        return true;
    }
    let (p, h): (Vec<&str>, Vec<&str>) = (pattern.split('.').collect(), host.split('.').collect());
    p.len() == h.len() && p.iter().zip(&h).all(|(p, h)| *p == "*" || p.eq_ignore_ascii_case(h))
}

/// A request path as segments: the query dropped, percent-decoding applied, empty segments
/// skipped. None for a path with `.` or `..` segments (plain or encoded) or an encoded slash:
/// a router may resolve those differently from here, so such a path is refused rather than
/// normalised (`single/../bulk` never reaches a handler as if it were `single/...`).
pub fn normalise(path: &str) -> Option<Vec<String>> {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let mut segments: Vec<String> = Vec::new();
    for segment in path.split('/') {
        let segment = percent_decode(segment)?;
        match segment.as_str() {
            "" => {}
            "." | ".." => return None,
            _ => segments.push(segment),
        }
    }
    Some(segments)
}

fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let decoded = String::from_utf8(out).ok()?;
    // An encoded slash must not smuggle segments past the rules.
    (!decoded.contains('/')).then_some(decoded)
}

/// `*` matches any run of characters (slashes included), everything else itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

/// What a request needs, from its method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// GET, HEAD, OPTIONS: the claim's `read` list.
    Read,
    /// Everything else: the claim's `write` list.
    Write,
}

impl Access {
    /// The access a request method needs.
    pub fn of(method: &http::Method) -> Access {
        match *method {
            http::Method::GET | http::Method::HEAD | http::Method::OPTIONS => Access::Read,
            _ => Access::Write,
        }
    }

    fn claim_key(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
        }
    }
}

/// Why the claims do not allow a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal(pub String);

/// The IS-10 path rules: `/` and `/x-nmos` are open to any valid token; `/x-nmos/<api>` and
/// `/x-nmos/<api>/<version>` need the API in `scope` or an `x-nmos-<api>` claim; deeper paths
/// need a read or write entry of `x-nmos-<api>` matching the path below the version. The base
/// paths (those down to the version) are for reading only.
pub fn authorize(claims: &Value, path: &str, access: Access) -> Result<(), Refusal> {
    let segments = normalise(path).ok_or_else(|| Refusal("the path has dot segments or encoded slashes".into()))?;
    if segments.len() <= 3 && access != Access::Read {
        return Err(Refusal("an API's base paths are read-only".into()));
    }
    let (first, api) = (segments.first().map(String::as_str), segments.get(1));
    let api = match (first, api) {
        (None, _) | (Some("x-nmos"), None) => return Ok(()),
        (Some("x-nmos"), Some(api)) => api.as_str(),
        _ => return Err(Refusal("not an NMOS API path".into())),
    };
    let claim = claims.get(format!("x-nmos-{api}"));
    if segments.len() <= 3 {
        let in_scope = claims["scope"].as_str().is_some_and(|s| s.split_whitespace().any(|s| s == api));
        return if in_scope || claim.is_some() { Ok(()) } else { Err(Refusal(format!("no access to the {api} API"))) };
    }
    let relative = segments[3..].join("/");
    let patterns = claim.and_then(|c| c[access.claim_key()].as_array()).cloned().unwrap_or_default();
    if patterns.iter().filter_map(Value::as_str).any(|p| glob(p, &relative)) {
        Ok(())
    } else {
        Err(Refusal(format!("no {} access to {api} {relative}", access.claim_key())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn audiences_match_label_by_label() {
        assert!(audience_matches("*", "anything.example.com"));
        assert!(audience_matches("*.example.com", "node-1.example.com"));
        assert!(audience_matches("https://*.example.com", "node-1.example.com"));
        assert!(!audience_matches("*.example.com", "a.b.example.com"), "one label per *");
        assert!(!audience_matches("*.example.com", "example.com"));
        assert!(!audience_matches("*.example.org", "node-1.example.com"));
        assert!(audience_matches("Node-1.Example.com", "node-1.example.com"));
        assert!(audience_matches("[::1]", "[::1]"));
        assert!(audience_matches("https://[fd00::1]:443", "fd00::1"));
        assert!(!audience_matches("[::1]", "[::2]"));
        assert!(!audience_matches("[::1]", "localhost"));
    }

    #[test]
    fn paths_are_normalised_before_matching() {
        assert_eq!(normalise("/x-nmos/a/v1.0/bulk?x=/single/y").unwrap(), ["x-nmos", "a", "v1.0", "bulk"]);
        assert!(normalise("/x-nmos/a/v1.0/single/../bulk").is_none());
        assert!(normalise("/x-nmos/query/%2e%2e/connection/v1.1").is_none(), "no encoded dot segments");
        assert!(normalise("/../etc").is_none());
        assert!(normalise("/x-nmos/a/v1.0/single%2F..%2Fbulk").is_none(), "no encoded slashes");
        assert!(glob("single/*", "single/senders/abc/staged"));
        assert!(glob("*", ""));
        assert!(!glob("single/*", "bulk/senders"));
        assert!(glob("single/*/staged", "single/senders/abc/staged"));
    }

    #[test]
    fn path_rules_follow_is_10() {
        let claims = json!({"scope": "connection", "x-nmos-connection": {"read": ["*"], "write": ["single/*"]}});
        let ok = |path: &str, access| authorize(&claims, path, access).is_ok();
        assert!(ok("/", Access::Read) && ok("/x-nmos", Access::Read) && ok("/x-nmos/", Access::Read));
        assert!(ok("/x-nmos/connection", Access::Read) && ok("/x-nmos/connection/v1.1/", Access::Read));
        assert!(ok("/x-nmos/connection/v1.1/single/senders/x/staged", Access::Write));
        assert!(!ok("/x-nmos/connection/v1.1/bulk/senders", Access::Write));
        assert!(!ok("/x-nmos/connection/v1.1/single/../bulk/senders", Access::Write));
        assert!(ok("/x-nmos/connection/v1.1/bulk/senders", Access::Read));
        assert!(!ok("/x-nmos/query/v1.3/nodes", Access::Read), "another API");
        assert!(!ok("/x-nmos/query", Access::Read));
        assert!(!ok("/other", Access::Read));
        for base in ["/", "/x-nmos", "/x-nmos/connection", "/x-nmos/connection/v1.1/"] {
            assert!(!ok(base, Access::Write), "base paths are read-only: {base}");
        }
    }
}
