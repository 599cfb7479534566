//! Server-rendered HTML: one layout, escaped text, no JavaScript needed.
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use crate::http::no_store;

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
:root { --ink: #1d2433; --muted: #5b6478; --line: #dde2ea; --bg: #f5f7fa; --accent: #1f5fbf; --danger: #b3261e; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); background: var(--bg); }
header { display: flex; align-items: center; justify-content: space-between; padding: 0.75rem 1.5rem; background: #fff; border-bottom: 1px solid var(--line); }
.brand { font-weight: 700; color: var(--ink); text-decoration: none; letter-spacing: 0.02em; }
.brand span { color: var(--accent); }
nav { display: flex; gap: 1rem; align-items: center; color: var(--muted); font-size: 0.95rem; }
nav form { margin: 0; }
main { max-width: 46rem; margin: 3rem auto; padding: 2rem; background: #fff; border: 1px solid var(--line); border-radius: 10px; }
h1 { margin: 0 0 1rem; font-size: 1.5rem; }
p { margin: 0 0 1rem; }
.muted { color: var(--muted); font-size: 0.95rem; }
label { display: block; margin: 0 0 1rem; font-weight: 600; }
input[type=text], input[type=password] { display: block; width: 100%; margin-top: 0.35rem; padding: 0.6rem 0.7rem; font: inherit; border: 1px solid var(--line); border-radius: 6px; }
button { font: inherit; padding: 0.6rem 1.2rem; border-radius: 6px; border: 1px solid var(--accent); background: var(--accent); color: #fff; cursor: pointer; }
button.secondary { background: #fff; color: var(--ink); border-color: var(--line); }
button.link { padding: 0; border: 0; background: none; color: var(--accent); }
.actions { display: flex; gap: 0.75rem; margin-top: 1.5rem; }
.alert { padding: 0.75rem 1rem; border-radius: 6px; background: #fdecea; color: var(--danger); margin-bottom: 1rem; }
ul.rights { list-style: none; padding: 0; margin: 0 0 1rem; border: 1px solid var(--line); border-radius: 6px; }
ul.rights li { display: flex; justify-content: space-between; padding: 0.55rem 0.8rem; border-top: 1px solid var(--line); }
ul.rights li:first-child { border-top: 0; }
.tag { font-size: 0.85rem; padding: 0.1rem 0.5rem; border-radius: 999px; background: #e8effb; color: var(--accent); }
code { font-size: 0.9em; background: var(--bg); padding: 0.1rem 0.3rem; border-radius: 4px; }
h2 { font-size: 1.15rem; margin: 1.75rem 0 0.75rem; }
.card h2 { margin-top: 0; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 1rem 1.2rem; margin-bottom: 1rem; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 0.3rem 1rem; margin: 0 0 1rem; }
dt { color: var(--muted); }
dd { margin: 0; overflow-wrap: anywhere; }
textarea, select { display: block; width: 100%; margin-top: 0.35rem; padding: 0.5rem 0.6rem; font: inherit; border: 1px solid var(--line); border-radius: 6px; background: #fff; }
td select { display: inline-block; width: auto; min-width: 4.6rem; margin: 0; padding: 0.3rem; }
main:has(.wide) { max-width: 72rem; }
fieldset { border: 1px solid var(--line); border-radius: 6px; margin: 0 0 1rem; padding: 0.5rem 1rem 0.75rem; }
legend { font-weight: 600; padding: 0 0.3rem; }
label.check, label.inline { font-weight: 400; margin: 0.4rem 0; }
label.inline { display: inline-block; margin-right: 1rem; }
label.inline select { display: inline-block; width: auto; }
button.danger { background: #fff; color: var(--danger); border-color: #f1c6c3; }
.wide { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 0.92rem; }
th, td { text-align: left; padding: 0.45rem 0.3rem; border-bottom: 1px solid var(--line); vertical-align: middle; }
td.buttons { white-space: nowrap; }
td.buttons button { padding: 0.35rem 0.7rem; }
.tag.off { background: #fdecea; color: var(--danger); }
code.secret { font-size: 1rem; padding: 0.3rem 0.5rem; }
nav a { color: var(--ink); text-decoration: none; }
nav a:hover { text-decoration: underline; }
nav.tabs { gap: 0.5rem; margin: -0.5rem 0 1.5rem; border-bottom: 1px solid var(--line); padding-bottom: 0.5rem; }
nav.tabs a { padding: 0.25rem 0.6rem; border-radius: 6px; }
nav.tabs a[aria-current] { background: #e8effb; color: var(--accent); }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(16rem, 1fr)); gap: 1rem; }
.grid .card { margin: 0; }
main:has(.grid) { max-width: 72rem; }
form.filters { display: flex; flex-wrap: wrap; align-items: center; gap: 0.5rem 1rem; margin-bottom: 1rem; }
form.filters label.inline { margin: 0; }
form.filters input { display: inline-block; width: auto; margin: 0 0 0 0.3rem; padding: 0.4rem 0.5rem; font: inherit; border: 1px solid var(--line); border-radius: 6px; }
td.number, th.number { text-align: right; font-variant-numeric: tabular-nums; }
td input[type=text] { margin: 0; padding: 0.35rem 0.5rem; }
.pager { display: flex; gap: 1.5rem; }
.notice { padding: 0.75rem 1rem; border-radius: 6px; background: #e6f4ea; color: #1e6b34; }
tr.warn td { background: #fdf6e3; }
td.time { white-space: nowrap; }
td, li, dd { overflow-wrap: anywhere; }
td code, .tag { white-space: nowrap; overflow-wrap: normal; }
main:has(#events) { max-width: 86rem; }
details { margin: 0.5rem 0 1rem; }
summary { cursor: pointer; color: var(--accent); margin-bottom: 0.75rem; }
footer { text-align: center; color: var(--muted); font-size: 0.85rem; margin-bottom: 2rem; }
"#;

/// A whole page. `nav` is already HTML; `body` is already HTML.
pub fn page(status: StatusCode, title: &str, nav: &str, body: &str) -> Response {
    let html = format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · nmos-auth</title>
<link rel="stylesheet" href="{base}/style.css">
</head>
<body>
<header><a class="brand" href="{base}/home">nmos<span>-auth</span></a><nav>{nav}</nav></header>
<main>
<h1>{title}</h1>
{body}
</main>
<footer>NMOS IS-10 Authorization Server</footer>
</body>
</html>
"#,
        title = escape(title),
        base = nmos_auth_core::AUTH_API_BASE,
    );
    // Pages can show a CSRF token, a client secret and who is signed in: never cached. Never
    // framed either, so that another site cannot trick a click on Approve (RFC 6819 §4.4.1.9).
    let framing = [
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(PAGE_POLICY)),
    ];
    (status, no_store(), framing, Html(html)).into_response()
}

/// The pages' Content Security Policy (CSP Level 3): styles and scripts from this origin
/// only, nothing inline, nothing else loaded, and no framing. `form-action` is left out on
/// purpose: the consent form's answer redirects to the client, which browsers would check
/// against it.
pub const PAGE_POLICY: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
                               base-uri 'none'; frame-ancestors 'none'";

/// `GET /x-nmos/auth/v1.0/style.css`: the pages' one stylesheet (a file, so that the policy
/// needs no inline styles).
pub async fn stylesheet() -> Response {
    let cache = HeaderValue::from_static("public, max-age=3600");
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8")), (header::CACHE_CONTROL, cache)],
        STYLE,
    )
        .into_response()
}

/// The navigation for a session: who is signed in and a sign-out button, or a sign-in link.
pub fn nav(username: Option<&str>, csrf: &str) -> String {
    let base = nmos_auth_core::AUTH_API_BASE;
    match username {
        Some(user) => format!(
            r#"<span>Signed in as <strong>{}</strong></span><form method="post" action="{base}/signout"><input type="hidden" name="csrf" value="{}"><button class="link" type="submit">Sign out</button></form>"#,
            escape(user),
            escape(csrf)
        ),
        None => format!(r#"<a href="{base}/signin">Sign in</a>"#),
    }
}

/// An error page for people (an HTML answer where a redirect cannot be trusted).
pub fn error(status: StatusCode, title: &str, message: &str, nav: &str) -> Response {
    let body = format!(r#"<div class="alert">{}</div><p class="muted">HTTP {}</p>"#, escape(message), status.as_u16());
    page(status, title, nav, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }
}
