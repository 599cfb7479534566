//! What this server supports, as the services implement it and its RFC 8414 metadata announces
//! it: each list defined once, here. The services parse from these lists (and tests hold them to
//! what they accept); the gateway publishes them.

/// How a client authenticates at the token and revocation endpoints (RFC 7591 §2): with its
/// secret in HTTP Basic or in the body, with a signed assertion (RFC 7523), or as a public
/// client, with nothing.
pub const CLIENT_AUTH_METHODS: [&str; 4] = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"];

/// ... and at the introspection endpoint, where a public client may not (it would be a token
/// oracle).
pub const INTROSPECTION_AUTH_METHODS: [&str; 3] = ["client_secret_basic", "client_secret_post", "private_key_jwt"];

/// The algorithms of `private_key_jwt` client assertions (nmos-cpp signs RS256). Never `none`,
/// never HMAC (a shared secret is not a private key).
pub const ASSERTION_ALGORITHMS: [&str; 5] = ["RS256", "RS384", "RS512", "PS256", "ES256"];

/// PKCE code challenge methods (RFC 7636 §4.2).
pub const PKCE_METHODS: [&str; 2] = ["S256", "plain"];
