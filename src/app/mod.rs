//! `App`: the cheap-to-clone handle every request handler gets: the store,
//! the configuration, the writers and the relay, the trust material in force,
//! and the caches and counters of the request path (`view_cache`, `metrics`).
//! It depends on the domain modules, never on `routes` or `server`.

pub(crate) mod connections;
pub(crate) mod metrics;
pub(crate) mod view_cache;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use self::metrics::Metrics;
use self::view_cache::{KeyCache, ViewCache};
use crate::config::Config;
use crate::identity::Trust;
use crate::logs::ingest::LogWriter;
use crate::logs::relay::{self, Hub};
use crate::sign_in::rate_limit::RateLimiter;
use crate::sign_in::{SignInWriter, TrustSlot};
use crate::store::Store;

#[derive(Clone)]
pub struct App {
    pub store: Store,
    pub config: Arc<Config>,
    /// Instance-identity trust material; replaced whole when it is reloaded.
    pub trust_slot: TrustSlot,
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
    /// Tokens already validated (flows in progress are in the database).
    pub external_auth_state: Arc<crate::external_auth::flow::FlowState>,
    /// Counters for `GET /metrics`.
    pub metrics: Arc<Metrics>,
    /// Cancelled when shutdown begins: the server stops accepting, and
    /// long-lived streams (the reinit SSE stream, external-auth `listen`, log
    /// follow sockets) select on it and end.
    pub shutdown: CancellationToken,
    /// The DERP map given to agents (manifest, StreamDERPMaps) and clients
    /// (`/derp-map`, `/connection`); subscribers see every change.
    pub derp_map: tokio::sync::watch::Sender<Arc<crate::rpc::proto::tailnet::DerpMap>>,
    /// Signs resume tokens; kept in the database, so tokens survive a restart.
    pub resume_key: crate::tailnet::resume::Key,
    /// Signs the web terminal's tokens (`POST
    /// /applications/reconnecting-pty-signed-token`, HMAC-SHA256); kept in
    /// the database like `resume_key`.
    pub pty_token_key: [u8; 32],
    /// Signs the dashboard's CSRF tokens (HMAC-SHA256 of the session's API
    /// key id); kept in the database like `resume_key`.
    pub csrf_key: [u8; 32],
    /// The tailnet coordinator: agents' and clients' nodes and tunnels.
    pub coordinator: crate::tailnet::coordinator::Coordinator,
    /// Agents connected over `/me/rpc`, watched by the connection monitor.
    pub connections: Arc<connections::Connections>,
    /// The embedded DERP relay (`GET /derp`), with the key kept in the database.
    pub derp: Arc<crate::derp::Relay>,
    /// appliance's own tailnet peer: dials ports on agents (listening ports,
    /// containers, the web terminal).
    pub dialer: Arc<crate::peer::AgentDialer>,
}

impl App {
    /// Builds the app and starts its background threads: the log and sign-in
    /// writers and the watcher that notices other processes' commits.
    /// `route_templates` are the routes `/metrics` counts requests under
    /// (`routes::templates()`; passed in, since `app` sits below `routes`).
    pub fn start(
        store: Store,
        config: Config,
        trust: Trust,
        route_templates: impl Iterator<Item = &'static str>,
    ) -> anyhow::Result<App> {
        let hub = Hub::default();
        let logs = LogWriter::start(
            store.clone(),
            hub.clone(),
            i64::from(config.logs.max_bytes_per_agent),
        )?;
        let sign_ins = SignInWriter::start(store.clone())?;
        let derp_map =
            crate::tailnet::derp_map::from_config(&config, |p| std::fs::read_to_string(p))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
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
        let derp = Arc::new(crate::derp::Relay::new(derp_key(&store)?));
        let resume_key = resume_key(&store)?;
        let pty_token_key = server_key(&store, PTY_TOKEN_KEY_NAME, "web terminal token")?;
        let csrf_key = server_key(&store, CSRF_KEY_NAME, "dashboard CSRF")?;
        let shutdown = CancellationToken::new();
        let coordinator = crate::tailnet::coordinator::Coordinator::default();
        let dialer = Arc::new(crate::peer::AgentDialer::new(
            peer_keys(&store)?,
            config
                .derp
                .embedded_relay
                .then(|| i32::try_from(config.derp.region_id).unwrap_or(i32::MAX)),
            coordinator.clone(),
            derp.clone(),
            shutdown.clone(),
        ));
        Ok(App {
            identity_limiter: Arc::new(RateLimiter::new(config.identity.rate_limit_per_minute)),
            metrics: Arc::new(Metrics::new(&config.metrics, route_templates)),
            config: Arc::new(config),
            trust_slot: TrustSlot::new(trust),
            store,
            hub,
            logs,
            sign_ins,
            agent_views: Arc::new(ViewCache::default()),
            api_keys: Arc::new(KeyCache::default()),
            external_auth: Arc::new(external_auth),
            external_auth_state: Arc::default(),
            shutdown,
            connections: Arc::default(),
            coordinator,
            resume_key,
            pty_token_key,
            csrf_key,
            derp_map: tokio::sync::watch::Sender::new(Arc::new(derp_map)),
            dialer,
            derp,
        })
    }

    /// The trust material in force now (a cheap snapshot).
    pub fn trust(&self) -> Arc<Trust> {
        self.trust_slot.get()
    }

    /// Replaces the trust material for every later request.
    pub fn set_trust(&self, trust: Trust) {
        self.trust_slot.set(trust);
    }
}

/// The DERP relay's key: the one in the database, or a new one stored now.
/// The resume-token key: made on first start, then read from the database.
fn resume_key(store: &Store) -> anyhow::Result<crate::tailnet::resume::Key> {
    let fresh = crate::tailnet::resume::Key::random();
    let stored = store.write(|tx| {
        crate::store::server_keys::get_or_insert(
            tx,
            crate::tailnet::resume::KEY_NAME,
            fresh.as_bytes(),
            crate::store::now(),
        )
    })?;
    crate::tailnet::resume::Key::from_bytes(&stored)
        .ok_or_else(|| anyhow::anyhow!("the stored resume-token key is damaged"))
}

/// The tailnet peer's node and disco keys: the ones in the database, or new
/// ones stored now (so the server's node key survives a restart).
fn peer_keys(store: &Store) -> anyhow::Result<crate::peer::Keys> {
    let fresh = crate::peer::Keys::generate();
    let get = |name: &str, bytes: &[u8; 32]| -> anyhow::Result<[u8; 32]> {
        let stored = store.write(|tx| {
            crate::store::server_keys::get_or_insert(tx, name, bytes, crate::store::now())
        })?;
        <[u8; 32]>::try_from(stored.as_slice())
            .map_err(|_| anyhow::anyhow!("the stored key {name:?} is damaged"))
    };
    Ok(crate::peer::Keys {
        node: get(crate::peer::NODE_KEY_NAME, &fresh.node)?,
        disco: get(crate::peer::DISCO_KEY_NAME, &fresh.disco)?,
    })
}

/// The name of the web terminal's token key among the server keys.
const PTY_TOKEN_KEY_NAME: &str = "reconnecting_pty_token";

/// The name of the dashboard's CSRF key among the server keys.
const CSRF_KEY_NAME: &str = "dashboard_csrf";

/// A 32-byte key of the server's (`what` names it in errors): made on first
/// start, then read from the database.
fn server_key(store: &Store, name: &str, what: &str) -> anyhow::Result<[u8; 32]> {
    let fresh: [u8; 32] = rand::random();
    let stored = store.write(|tx| {
        crate::store::server_keys::get_or_insert(tx, name, &fresh, crate::store::now())
    })?;
    <[u8; 32]>::try_from(stored.as_slice())
        .map_err(|_| anyhow::anyhow!("the stored {what} key is damaged"))
}

fn derp_key(store: &Store) -> anyhow::Result<crate::derp::ServerKey> {
    let fresh = crate::derp::ServerKey::generate();
    let stored = store.write(|tx| {
        crate::store::server_keys::get_or_insert(
            tx,
            crate::derp::KEY_NAME,
            &fresh.to_bytes(),
            crate::store::now(),
        )
    })?;
    crate::derp::ServerKey::from_bytes(&stored)
        .map_err(|e| anyhow::anyhow!("the stored DERP key is damaged: {e}"))
}
