//! Black-box tests: the real `appliance` binary, its CLI and its HTTP API.
//! Every test runs its own processes on its own database, so they run in
//! parallel. See `harness.rs`.

mod harness;

mod agents;
mod auth;
mod cli;
mod errors;
mod lifecycle;
mod manifest;
mod workspaces;
