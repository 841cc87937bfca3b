//! The agent's RPC connection (`GET /api/v2/workspaceagents/me/rpc`):
//! WebSocket, then yamux, then DRPC carrying protobuf messages
//! (`../shared/design/CONNECTIVITY.md` §1). Two pieces are here, not served
//! yet: the DRPC layer ([`drpc`]), which knows bytes and RPC names, not HTTP,
//! yamux or the services' messages; and those messages, hand-written prost
//! structs, with the RPC name table ([`proto`]).

pub mod drpc;
pub mod proto;
