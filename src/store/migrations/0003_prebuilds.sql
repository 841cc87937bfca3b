-- Prebuilt workspaces (Coder's prebuilds): created for the prebuilds system
-- user, later claimed by a real user with a "claim" build whose outcome the
-- waiting agent learns from GET /me/reinit.

-- System users (the prebuilds owner) own workspaces but never sign in, are not
-- listed and do not count as the first admin.
ALTER TABLE users ADD COLUMN is_system INTEGER NOT NULL DEFAULT 0 CHECK (is_system IN (0, 1));

INSERT INTO users (id, username, email, role, created_at, is_system)
VALUES ('c42fdf75-3097-471c-8c33-fb52454d81c0', 'prebuilds', '', 'member', 0, 1)
ON CONFLICT (id) DO NOTHING;

-- The build's job outcome (appliance records builds as done when the CLI
-- writes them; a claim can be recorded as failed), and whether the build is
-- a prebuild's claim.
ALTER TABLE workspace_builds ADD COLUMN job_status TEXT NOT NULL DEFAULT 'succeeded'
    CHECK (job_status IN ('running', 'succeeded', 'failed'));
ALTER TABLE workspace_builds ADD COLUMN job_error TEXT;
ALTER TABLE workspace_builds ADD COLUMN prebuild_claim INTEGER NOT NULL DEFAULT 0
    CHECK (prebuild_claim IN (0, 1));
