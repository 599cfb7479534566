//! One assembly per service, used by `nmos-auth serve` (all in one process) and by each split
//! deployment command alike: open the service's store (waiting for the database, which may start
//! after us), then start what runs in its background (the key schedule, housekeeping).
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use nmos_auth_client_registry::ClientRegistryService;
use nmos_auth_core::Config;
use nmos_auth_identity::IdentityService;
use nmos_auth_keys::KeysService;
use nmos_auth_token_issuer::{Peers, TokenIssuerService};

/// The keys service, its schedule and housekeeping running.
pub async fn keys(config: &Config) -> anyhow::Result<Arc<KeysService>> {
    let keys = Arc::new(open_with_retry("keys store", || KeysService::open(config)).await?);
    keys.run_schedule();
    keys.run_housekeeping(housekeeping_interval(config), config.housekeeping_batch);
    register_metrics(keys.clone());
    Ok(keys)
}

/// The identity service, its housekeeping running. On a server without users it logs a one-time
/// setup code for the first administrator's sign-up, for whoever started it (as Jenkins does):
/// in the log, in its format, because that is what an operator of a container can read. A code
/// is good for 24 hours, so while there are no users a new one is logged every 12 hours. Codes
/// are worthless once an administrator exists.
pub async fn identity(config: &Config) -> anyhow::Result<Arc<IdentityService>> {
    let identity = Arc::new(open_with_retry("identity store", || IdentityService::open(config)).await?);
    let signup = format!("{}/signup", config.issuer()?);
    if log_setup_code(&identity, &signup).await? {
        let identity = Arc::downgrade(&identity);
        tokio::spawn(async move {
            let every = Duration::from_secs(nmos_auth_identity::setup::RENEW_SECS);
            loop {
                tokio::time::sleep(every).await;
                let Some(identity) = identity.upgrade() else { return };
                match log_setup_code(&identity, &signup).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    // The store is down: the codes logged so far stay good for a while.
                    Err(e) => tracing::warn!(error = %e, "could not make a new setup code"),
                }
            }
        });
    }
    identity.run_housekeeping(housekeeping_interval(config), config.housekeeping_batch);
    register_metrics(identity.clone());
    Ok(identity)
}

/// The client registry, its housekeeping running.
pub async fn client_registry(config: &Config) -> anyhow::Result<Arc<ClientRegistryService>> {
    let clients = open_with_retry("client registry store", || ClientRegistryService::open(config)).await?;
    clients.run_housekeeping(housekeeping_interval(config), config.housekeeping_batch);
    let clients = Arc::new(clients);
    register_metrics(clients.clone());
    Ok(clients)
}

/// The token issuer, calling `peers`, its housekeeping running.
pub async fn token_issuer(config: &Config, peers: Peers) -> anyhow::Result<Arc<TokenIssuerService>> {
    let issuer = open_with_retry("token issuer store", || TokenIssuerService::open(config, peers.clone())).await?;
    issuer.run_housekeeping(housekeeping_interval(config), config.housekeeping_batch);
    Ok(Arc::new(issuer))
}

/// What `service` reads at each scrape of the Prometheus endpoint, for as long as it runs.
fn register_metrics(service: Arc<dyn nmos_auth_core::metrics::Collect>) {
    nmos_auth_core::metrics::register(&service);
}

fn housekeeping_interval(config: &Config) -> Duration {
    Duration::from_secs(config.housekeeping_interval)
}

/// Makes and logs a new setup code if the server has no users yet; false once it has.
async fn log_setup_code(identity: &IdentityService, signup: &str) -> anyhow::Result<bool> {
    let Some(code) = identity.first_administrator_setup().await.map_err(|e| anyhow::anyhow!("{e}"))? else {
        return Ok(false);
    };
    tracing::warn!(
        setup_code = %code,
        signup,
        "this server has no administrator yet: sign up with this one-time setup code (good for 24 hours), \
         or run `nmos-auth admin add-user NAME --admin`"
    );
    Ok(true)
}

/// Opens a store, waiting for the database for up to a minute (it may start after us). Other
/// failures (a wrong key-encryption key, a bad migration) are final at once.
async fn open_with_retry<T, F, Fut>(what: &str, open: F) -> anyhow::Result<T>
where
    F: Fn() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut delay = Duration::from_millis(200);
    loop {
        match open().await {
            Ok(opened) => return Ok(opened),
            Err(e) if tokio::time::Instant::now() < deadline && nmos_auth_core::error::is_unavailable(&e) => {
                tracing::warn!(error = %format!("{e:#}"), retry_in = ?delay, "opening the {what}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e.context(format!("opening the {what}"))),
        }
    }
}
