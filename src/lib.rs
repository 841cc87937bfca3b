//! appliance: Coder's workspace-agent API for people who run their own
//! machines, in one process on one SQLite file.
//!
//! # Layout
//!
//! - `cli`: the command line (`serve` and the admin commands); `main.rs` only calls it.
//! - `config`: defaults < TOML file < `APPLIANCE_*` env < flags, validated once.
//! - `server`: binds, serves, shuts down gracefully. `routes`: the routing table
//!   and handlers; with `error` (Coder's error bodies) the only code that knows warp.
//! - `sdk`: the wire types, shaped exactly like Coder's JSON.
//! - `store`: the only code that speaks SQL; migrations and `schema.sql`.
//! - `manifest`: workspace manifests (what an operator writes instead of a template).
//! - `auth`: API keys and agent tokens; only their SHA-256 digests are stored.
//! - `agent_status`: connection status and health, derived from timestamps.
//! - `identity`: cloud instance-identity proofs (AWS, Azure, GCP), verified
//!   offline; no I/O, the clock passed in.
//! - `trust_files`: reads the trust material the config names into `identity::Trust`.
//! - `jwks_refresh`: fetches Google's JWKS from `identity.gcp.jwks_url` when reachable.
//! - `ingest`: cleans log lines and commits batches through one group-committing writer.
//! - `relay`: wakes log followers on new lines and on commits by other processes.
//! - `retention`: purges logs of replaced agents after `logs.retention`.
//! - `agent_select`: which agent an instance-identity sign-in is for; `sign_in`
//!   stores the chosen agent's new token, many sign-ins per commit.
//! - `agent`: the workspace side (`appliance agent auth`, `appliance agent logs`):
//!   instance-identity sign-in from the cloud metadata service, shipping script output as logs.
//! - `rate_limit`: per-address budget for unauthenticated sign-ins.
//! - `external_auth`: OAuth2 git providers: defaults per type, choosing one, the agent's answer.
//! - `oauth_client`: code exchange, refresh and validation at external-auth providers (blocking HTTP).
//! - `gitsshkey`: workspace owners' git SSH key pairs (OpenSSH formats).
//! - `sanitize`: cleans free text agents report (app-status messages).
//! - `view_cache`: rendered agent responses, reused while provably current.
//! - `telemetry`: logging.
//! - `systemd`: sd_notify for `Type=notify` (ready, stopping, watchdog).
//! - `healthcheck`: `appliance healthcheck`; `generate`: man page and completions.
//! - `backup`: the `backup` and `restore` commands (`store::backup` does the copying).
//! - `metrics`: counters and histograms for `GET /metrics` (Prometheus text).
//! - `reload`: SIGHUP re-reads the config file and trust material.
//!
//! See ARCHITECTURE.md for the invariants.

pub mod agent;
pub mod agent_select;
pub mod agent_status;
pub mod app;
pub mod auth;
pub mod backup;
pub mod cli;
pub mod config;
pub mod error;
pub mod external_auth;
pub mod generate;
pub mod gitsshkey;
pub mod healthcheck;
pub mod identity;
pub mod ingest;
pub mod jwks_refresh;
pub mod manifest;
pub mod metrics;
pub mod oauth_client;
pub mod rate_limit;
pub mod relay;
pub mod reload;
pub mod retention;
pub mod routes;
pub mod sanitize;
pub mod sdk;
pub mod server;
pub mod sign_in;
pub mod store;
pub mod systemd;
pub mod telemetry;
pub mod trust_files;
pub mod view_cache;
