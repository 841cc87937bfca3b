//! Black-box tests: the real `appliance` binary, its CLI and its HTTP API.
//! Every test runs its own processes on its own database, so they run in
//! parallel. See `harness.rs`.

mod harness;

mod agent_auth;
mod agent_logs;
mod agents;
mod auth;
mod cli;
mod errors;
mod identity;
mod identity_support;
mod lifecycle;
mod logs;
mod logs_support;
mod manifest;
mod metrics;
mod ops_backup;
mod reload;
mod workspaces;
