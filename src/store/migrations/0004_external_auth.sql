-- External auth: each user's OAuth2 link to a configured git provider
-- (Coder's external_auth_links). Unlike API keys and agent tokens these
-- tokens are kept as given: they are handed to the user's workspaces.
CREATE TABLE external_auth_links (
    provider_id    TEXT NOT NULL,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    access_token   TEXT NOT NULL,
    refresh_token  TEXT NOT NULL DEFAULT '',
    -- NULL: the token does not expire.
    expires_at     INTEGER,
    -- JSON object of extra token fields from the provider, if any.
    oauth_extra    TEXT,
    PRIMARY KEY (provider_id, user_id)
) STRICT, WITHOUT ROWID;

-- The providers a build's manifest declares (JSON array of ids).
ALTER TABLE workspace_builds ADD COLUMN external_auth_providers TEXT NOT NULL DEFAULT '[]';
