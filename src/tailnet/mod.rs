//! The tailnet as appliance coordinates it: how clients and agents reach
//! each other (WireGuard end to end, coordinated by this server, relayed by
//! DERP). Here: the DERP map ([`derp_map`]) built from `[derp]` in the
//! configuration. Pure: no I/O (the caller reads `derp.map_file`).

pub mod derp_map;
