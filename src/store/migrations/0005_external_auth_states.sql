-- External auth: browser flows in progress, from GET /external-auth/{provider}
-- to its callback. Only the SHA-256 digest of the OAuth2 `state` is kept,
-- bound to the user who started the flow and the provider. A user keeps a few
-- (the newest); rows older than the flow's lifetime are purged when another
-- flow starts and are never accepted.
CREATE TABLE external_auth_states (
    state_hash   BLOB PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider_id  TEXT NOT NULL,
    created_at   INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE INDEX external_auth_states_user ON external_auth_states (user_id, created_at);
CREATE INDEX external_auth_states_created ON external_auth_states (created_at);
