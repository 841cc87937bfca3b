//! `GET /api/v2/workspaceagents/me/rpc` against the real server.
