//! Black-box tests: the real `appliance` binary, its CLI and its HTTP API.
//! Every test runs its own processes on its own database, so they run in
//! parallel. See `harness.rs`.

mod harness;

mod agent_auth;
mod agent_logs;
mod agents;
mod app_status;
mod auth;
mod cli;
mod errors;
mod external_auth;
mod gitsshkey;
mod healthcheck;
mod identity;
mod identity_support;
mod lifecycle;
mod logs;
mod logs_limits;
mod logs_support;
mod manifest;
mod metrics;
mod ops_backup;
mod packaging;
mod reinit;
mod reload;
mod systemd;
mod workspaces;
