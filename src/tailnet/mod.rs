//! The tailnet as appliance coordinates it: how clients and agents reach
//! each other (WireGuard end to end, coordinated by this server, relayed by
//! DERP):
//! - [`derp_map`]: the DERP map built from `[derp]` in the configuration
//!   (pure: the caller reads `derp.map_file`);
//! - [`coordinator`]: peers, their nodes and tunnels, in memory (coderd's
//!   `tailnet.core`), with each kind of peer's authorisation;
//! - [`coordinate`]: one Coordinate stream driven against the coordinator;
//! - [`workspace_updates`]: `/tailnet`'s WorkspaceUpdates, as differences
//!   between two states of a user's workspaces (read by `store::tailnet`).

pub mod coordinate;
pub mod coordinator;
pub mod derp_map;
pub mod resume;
pub mod workspace_updates;
