-- Dashboard sign-in links (`appliance login-link`): a one-time token, kept
-- only as its SHA-256 digest, that signs its user in to the dashboard once
-- before it expires. Using a link deletes it; expired links are purged when
-- another is made.
CREATE TABLE login_links (
    token_hash  BLOB PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE INDEX login_links_expires ON login_links (expires_at);
