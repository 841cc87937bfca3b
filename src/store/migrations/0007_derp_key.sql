-- Keys the server generates once and keeps across restarts, by name. The
-- first is `derp`: the embedded DERP relay's X25519 private key (32 bytes),
-- so clients that remember the relay's public key still trust it after a
-- restart.
CREATE TABLE server_keys (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    created_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
