//! Black-box tests: the real `appliance` binary, its CLI and its HTTP API.
//! Every test runs its own processes on its own database, so they run in
//! parallel. See `harness.rs`.

// Tests panic on purpose: an unwrap that fails is a failing test.
#![allow(clippy::unwrap_used)]

mod harness;

mod agent_auth;
mod agent_logs;
mod agents;
mod app_status;
mod auth;
mod bin;
mod bounds;
mod cli;
mod connection_info;
mod connections;
mod coordinate;
mod derp;
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
mod reach;
mod reinit;
mod reload;
mod rpc;
mod rpc_client;
mod rpc_client_tests;
mod systemd;
mod tailnet_coordination;
mod tokens;
mod web;
mod wire;
mod workspaces;
