//! The agent's RPC connection (`GET /api/v2/workspaceagents/me/rpc`):
//! WebSocket, then yamux, then DRPC carrying protobuf messages
//! (`../shared/design/CONNECTIVITY.md` §1). Today only the DRPC layer is
//! here ([`drpc`]): it knows bytes and RPC names, not HTTP, yamux or the
//! services' messages.

pub mod drpc;
