//! appliance: Coder's workspace-agent API for people who run their own
//! machines, in one process on one SQLite file.
//!
//! # Layout
//!
//! Each folder is one heading of ARCHITECTURE.md; `tests/tidy.rs` checks the
//! boundaries between them.
//!
//! - `cli`: the command line (the admin commands; `serve` hands over to `server`).
//! - `config`: defaults < TOML file < `APPLIANCE_*` env < flags, validated once.
//! - `server`: start-up wiring, bind/serve/shutdown, the `App` handle, SIGHUP
//!   reload, systemd notification, the view cache, metrics and logging.
//! - `routes`: the routing table, handlers and `routes::error` (Coder's error
//!   bodies): the only code that knows warp and HTTP statuses.
//! - `sdk`: the wire types, shaped exactly like Coder's JSON.
//! - `store`: the only code that speaks SQL; migrations and `schema.sql`.
//! - `manifest`: workspace manifests (what an operator writes instead of a template).
//! - `auth`: API keys, agent tokens and roles; only digests are stored.
//! - `agent_status`: connection status and health, derived from timestamps.
//! - `agent_start`: the line (and the cloud-init user data) that starts
//!   Coder's agent on a machine.
//! - `agent_binaries`: the directory of Coder's agent binaries `GET /bin/`
//!   serves: safe names, opening, digests.
//! - `identity`: cloud instance-identity proofs (AWS, Azure, GCP), verified
//!   offline; no I/O, the clock passed in.
//! - `sign_in`: the rest of instance-identity sign-in: trust files, JWKS
//!   refresh, agent selection, the per-address rate limit, the group-committing writer.
//! - `logs`: agent logs: ingest (the group-committing writer), the relay that
//!   wakes followers, following, retention.
//! - `external_auth`: OAuth2 git providers, the OAuth client, the browser flow's state.
//! - `gitsshkey`: workspace owners' git SSH key pairs (OpenSSH formats).
//! - `sanitize`: cleans free text agents report (app-status messages).
//! - `derp`: the embedded DERP relay (`GET /derp`): frames, the relay with
//!   bounded per-client queues; its key is kept in the database.
//! - `rpc`: the agent's RPC connection (`/me/rpc`); today its DRPC layer and
//!   the protobuf messages of the Agent and Tailnet services.
//! - `agent`: the workspace side (`appliance agent auth`, `appliance agent logs`).
//! - `web`: the dashboard's pages (askama templates, view structs, the
//!   embedded stylesheet and script); `routes/web.rs` serves them.
//!
//! See ARCHITECTURE.md for the invariants.

pub(crate) mod agent;
pub(crate) mod agent_binaries;
pub(crate) mod agent_start;
pub(crate) mod agent_status;
pub(crate) mod agentapi;
pub(crate) mod app;
pub mod auth;
pub mod cli;
pub(crate) mod config;
pub mod derp;
pub(crate) mod external_auth;
pub(crate) mod gitsshkey;
pub mod identity;
pub(crate) mod logs;
pub mod manifest;
pub(crate) mod peer;
pub(crate) mod routes;
pub mod rpc;
pub(crate) mod sanitize;
pub(crate) mod sdk;
pub(crate) mod server;
pub mod sign_in;
pub mod store;
pub(crate) mod tailnet;
pub(crate) mod web;
