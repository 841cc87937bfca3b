-- Each user's git SSH key pair (Coder's gitsshkeys). The private key is kept
-- as it is served to the user's workspaces; users created before this
-- migration get one generated on first use.
CREATE TABLE gitsshkeys (
    user_id      TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    private_key  TEXT NOT NULL,
    public_key   TEXT NOT NULL
) STRICT;
