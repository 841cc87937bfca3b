//! Start-up wiring for `appliance serve`: logging, the runtime, the port,
//! the database (lock, migrations, first admin), trust material, the `App`
//! and its background tasks, then `server::run` until a shutdown signal.

use anyhow::Context;
use time::OffsetDateTime;

use super::{reload, telemetry};
use crate::app::App;
use crate::config::{self, Config};
use crate::sign_in::trust_files;
use crate::store::{self, Store};
use crate::{gitsshkey, server};

/// The name of the admin created on a new, empty database.
pub const FIRST_ADMIN: &str = "admin";

/// Runs the server until SIGTERM or SIGINT, with the configuration loaded once.
pub(crate) fn serve(loaded: config::Loaded, source: reload::Source) -> anyhow::Result<()> {
    let startup = loaded.values();
    let config = loaded.config;
    let log_output = telemetry::init(
        &config.log.filter,
        config.log.format == config::LogFormat::Json,
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("appliance")
        .build()
        .context("starting the async runtime")?;
    let served = runtime.block_on(async move {
        let mut config = config;
        // Bind first: a busy port must not leave a half-initialised database behind.
        let bound = server::bind(config.listen).await?;
        if config.listen.port() == 0 && config.access_url.ends_with(":0") {
            // Derived from an ephemeral port: name the port actually bound.
            config.access_url = format!("http://{}", bound.addr);
        }
        if let Some((before, after)) = server::raise_open_files_limit() {
            tracing::info!("open files limit raised from {before} to {after} (each connected agent holds one)");
        }
        if let Some(files) = server::open_files_limit() {
            let fit = server::connections_that_fit(files, config.database.pool_size);
            if u64::from(config.http.max_connections) > fit {
                let lowered = u32::try_from(fit).unwrap_or(u32::MAX);
                tracing::warn!(
                    "http.max_connections lowered from {} to {lowered}: the process may open only {files} files (raise LimitNOFILE or ulimit -n)",
                    config.http.max_connections
                );
                config.http.max_connections = lowered;
            }
        }
        let (store, schema, config, _db_lock) = tokio::task::spawn_blocking(move || {
            // Held until the process ends: `restore` and a second `serve` refuse meanwhile.
            let lock = store::lock::try_lock(&config.db).map_err(|e| match e {
                store::lock::LockError::Held { .. } => anyhow::anyhow!(
                    "another appliance server is serving {}: stop it first, or pass another --db",
                    config.db.display()
                ),
                store::lock::LockError::Store(e) => e.into(),
            })?;
            prepare_database(&config).map(|(store, schema)| (store, schema, config, lock))
        })
        .await
        .context("database setup task")??;
        let trust = trust_files::load(&config.identity)?;
        for w in &trust.warnings {
            tracing::warn!("{w}");
        }
        for n in &trust.notes {
            tracing::info!("{n}");
        }
        let notifier = crate::server::systemd::Notifier::from_env();
        let shutdown = notifier.clone().stopping_after(server::shutdown_signal()?);
        // Installed before the announcement: SIGHUP's default action would end the process.
        let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("listening for SIGHUP")?;
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            db = %config.db.display(),
            schema,
            access_url = %config.access_url,
            max_connections = config.http.max_connections,
            "listening on http://{}",
            bound.addr
        );
        if !tracing::enabled!(tracing::Level::INFO) {
            // Scripts and tests learn the port from this line whatever the log level.
            eprintln!("listening on http://{}", bound.addr);
        }
        let jwks_url = config.identity.gcp.jwks_url.clone();
        let base_trust = trust.trust.clone();
        let app = App::start(store, config, trust.trust, crate::routes::templates())?;
        tokio::spawn(crate::app::connections::run(
            app.connections.clone(),
            app.store.clone(),
            app.config.agent.connection_update_interval,
            app.config.agent.inactive_disconnect_timeout,
            app.shutdown.clone(),
        ));
        tokio::spawn(crate::logs::retention::run(
            app.store.clone(),
            app.config.logs.retention,
        ));
        let mut gcp_base = None;
        if let Some(url) = jwks_url {
            let (tx, rx) = tokio::sync::watch::channel(base_trust);
            gcp_base = Some(tx);
            tokio::spawn(crate::sign_in::jwks_refresh::run(
                app.trust_slot.clone(),
                rx,
                url,
            ));
        }
        let reloader = crate::server::reload::Reloader {
            source,
            app: app.clone(),
            log_filter: log_output.filter_handle(),
            gcp_base,
            startup,
        };
        tokio::spawn(reloader.run(hangup));
        notifier.ready(&format!("listening on http://{}", bound.addr));
        tokio::spawn(notifier.watchdog());
        server::run(bound, app, shutdown).await
    });
    // Tasks still running (sockets cut at the deadline) are dropped here;
    // blocking calls in flight (an OAuth provider that does not answer) are
    // not waited for beyond a moment.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    served
}

/// Opens and migrates the database; on a new, empty one creates the first admin.
fn prepare_database(config: &Config) -> anyhow::Result<(Store, i64)> {
    let store = open_store(config, false)?;
    let (before, after) = store.migrate().context("migrating the database schema")?;
    if before != after {
        tracing::info!(from = before, to = after, "database schema migrated");
    }
    let now = OffsetDateTime::now_utc();
    let created_admin = store.write(|tx| {
        if store::users::count_users(tx)? > 0 {
            return Ok(None);
        }
        store::users::insert_user(tx, FIRST_ADMIN, "", store::users::Role::Admin, now).map(Some)
    })?;
    if let Some(admin) = &created_admin {
        // Generated after the fact (RSA takes a while): the admin's workspaces
        // would otherwise get one on first use anyway.
        let key = gitsshkey::generate(config.ssh_keygen_algorithm).map_err(anyhow::Error::msg)?;
        store.write(|tx| {
            store::users::put_gitsshkey(tx, admin.id, &key.private_key, &key.public_key, now, false)
        })?;
    }
    if let Some(admin) = created_admin {
        tracing::info!(
            user = %admin.username,
            "new database: created the first admin user \"{}\"; get an API token with: appliance token create --user {} --db {} (or sign in to the dashboard at {} with a one-time link: appliance login-link --user {} --db {})",
            admin.username,
            admin.username,
            config.db.display(),
            config.access_url,
            admin.username,
            config.db.display()
        );
    }
    Ok((store, after))
}

/// Opens the database the configuration names, optionally migrating it.
pub(crate) fn open_store(config: &Config, migrate: bool) -> anyhow::Result<Store> {
    let options = store::Options {
        busy_timeout: config.database.busy_timeout,
        pool_size: config.database.pool_size,
        synchronous_full: config.database.synchronous_full,
    };
    let store = Store::open(&config.db, &options)
        .with_context(|| format!("opening the database {}", config.db.display()))?;
    if migrate {
        store.migrate().context("migrating the database schema")?;
    }
    Ok(store)
}
