//! `App`: the cheap-to-clone handle every request handler gets.

use std::sync::{Arc, RwLock};

use crate::config::Config;
use crate::identity::Trust;
use crate::logs::ingest::LogWriter;
use crate::logs::relay::{self, Hub};
use crate::server::metrics::Metrics;
use crate::server::view_cache::{KeyCache, ViewCache};
use crate::sign_in::SignInWriter;
use crate::sign_in::rate_limit::RateLimiter;
use crate::store::Store;

#[derive(Clone)]
pub struct App {
    pub store: Store,
    pub config: Arc<Config>,
    /// Instance-identity trust material; replaced whole when it is reloaded.
    trust: Arc<RwLock<Arc<Trust>>>,
    /// Per-address budget for the unauthenticated sign-in routes.
    pub identity_limiter: Arc<RateLimiter>,
    /// Wakes log followers.
    pub hub: Hub,
    /// The one writer of agent logs.
    pub logs: LogWriter,
    /// The one writer of instance-identity sign-ins (agent choice + token).
    pub sign_ins: SignInWriter,
    /// Rendered `GET /workspaceagents/{id}` bodies.
    pub agent_views: Arc<ViewCache>,
    /// API keys read recently (valid while the database is unchanged).
    pub api_keys: Arc<KeyCache>,
    /// `[[external_auth]]` providers, defaults filled in.
    pub external_auth: Arc<Vec<crate::external_auth::Provider>>,
    /// OAuth states in flight and tokens already validated.
    pub external_auth_state: Arc<crate::routes::ExternalAuthState>,
    /// Counters for `GET /metrics`.
    pub metrics: Arc<Metrics>,
}

impl App {
    /// Builds the app and starts its background threads: the log and sign-in
    /// writers and the watcher that notices other processes' commits.
    pub fn start(store: Store, config: Config, trust: Trust) -> anyhow::Result<App> {
        let hub = Hub::default();
        let logs = LogWriter::start(
            store.clone(),
            hub.clone(),
            i64::from(config.logs.max_bytes_per_agent),
        )?;
        let sign_ins = SignInWriter::start(store.clone())?;
        // Checked when the configuration was loaded; a failure here is a bug.
        let external_auth = config
            .external_auth
            .iter()
            .map(|spec| {
                crate::external_auth::provider(spec).map_err(|(field, why)| {
                    anyhow::anyhow!("external_auth \"{}\": {field}: {why}", spec.id)
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        relay::watch_database(&store, hub.clone())?;
        Ok(App {
            identity_limiter: Arc::new(RateLimiter::new(config.identity.rate_limit_per_minute)),
            metrics: Arc::new(Metrics::new(&config.metrics, crate::routes::templates())),
            config: Arc::new(config),
            trust: Arc::new(RwLock::new(Arc::new(trust))),
            store,
            hub,
            logs,
            sign_ins,
            agent_views: Arc::new(ViewCache::default()),
            api_keys: Arc::new(KeyCache::default()),
            external_auth: Arc::new(external_auth),
            external_auth_state: Arc::default(),
        })
    }

    /// The trust material in force now (a cheap snapshot).
    pub fn trust(&self) -> Arc<Trust> {
        self.trust
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Replaces the trust material for every later request.
    pub fn set_trust(&self, trust: Trust) {
        *self
            .trust
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(trust);
    }
}
