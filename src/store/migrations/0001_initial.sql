-- appliance schema, version 1.
-- Timestamps are INTEGER microseconds since the Unix epoch, UTC.
-- Ids are UUID strings (lowercase, hyphenated). Booleans are INTEGER 0/1.

CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    -- Usernames are ASCII (the CLI checks), so NOCASE makes them case-insensitive.
    username    TEXT NOT NULL UNIQUE COLLATE NOCASE,
    email       TEXT NOT NULL DEFAULT '',
    role        TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    created_at  INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX users_email ON users (lower(email)) WHERE email <> '';

-- API keys look like Coder's: "<id:10>-<secret:22>". Only SHA-256(secret) is stored.
CREATE TABLE api_keys (
    id             TEXT PRIMARY KEY,
    hashed_secret  BLOB NOT NULL,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name           TEXT NOT NULL DEFAULT '',
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    revoked_at     INTEGER
) STRICT;
CREATE INDEX api_keys_user_id ON api_keys (user_id);

CREATE TABLE workspaces (
    id          TEXT PRIMARY KEY,
    owner_id    TEXT NOT NULL REFERENCES users (id),
    name        TEXT NOT NULL COLLATE NOCASE,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    deleted     INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1))
) STRICT;
-- A name is unique per owner among live workspaces; a deleted name may be reused.
CREATE UNIQUE INDEX workspaces_owner_name ON workspaces (owner_id, name) WHERE deleted = 0;

-- Every apply, stop and delete is a build; build_number counts up per workspace.
CREATE TABLE workspace_builds (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    build_number  INTEGER NOT NULL,
    transition    TEXT NOT NULL CHECK (transition IN ('start', 'stop', 'delete')),
    initiator_id  TEXT NOT NULL REFERENCES users (id),
    created_at    INTEGER NOT NULL,
    UNIQUE (workspace_id, build_number)
) STRICT;

CREATE TABLE workspace_resources (
    id           TEXT PRIMARY KEY,
    build_id     TEXT NOT NULL REFERENCES workspace_builds (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    type         TEXT NOT NULL,
    instance_id  TEXT,
    created_at   INTEGER NOT NULL
) STRICT;
CREATE INDEX workspace_resources_build_id ON workspace_resources (build_id);

-- Only agents of a workspace's latest build have deleted = 0 (applying a build
-- soft-deletes the agents of every earlier build in the same transaction).
CREATE TABLE workspace_agents (
    id                          TEXT PRIMARY KEY,
    resource_id                 TEXT NOT NULL REFERENCES workspace_resources (id) ON DELETE CASCADE,
    parent_id                   TEXT REFERENCES workspace_agents (id) ON DELETE CASCADE,
    name                        TEXT NOT NULL,
    auth                        TEXT NOT NULL CHECK (auth IN ('token', 'aws-instance-identity', 'azure-instance-identity', 'google-instance-identity')),
    auth_instance_id            TEXT,
    created_at                  INTEGER NOT NULL,
    updated_at                  INTEGER NOT NULL,
    first_connected_at          INTEGER,
    last_connected_at           INTEGER,
    disconnected_at             INTEGER,
    last_connected_replica_id   TEXT,
    started_at                  INTEGER,
    ready_at                    INTEGER,
    architecture                TEXT NOT NULL DEFAULT '',
    operating_system            TEXT NOT NULL DEFAULT '',
    directory                   TEXT NOT NULL DEFAULT '',
    expanded_directory          TEXT NOT NULL DEFAULT '',
    version                     TEXT NOT NULL DEFAULT '',
    api_version                 TEXT NOT NULL DEFAULT '',
    environment_variables       TEXT,
    connection_timeout_seconds  INTEGER NOT NULL DEFAULT 0 CHECK (connection_timeout_seconds >= 0),
    troubleshooting_url         TEXT NOT NULL DEFAULT '',
    motd_file                   TEXT NOT NULL DEFAULT '',
    lifecycle_state             TEXT NOT NULL DEFAULT 'created' CHECK (lifecycle_state IN ('created', 'starting', 'start_timeout', 'start_error', 'ready', 'shutting_down', 'shutdown_timeout', 'shutdown_error', 'off')),
    logs_length                 INTEGER NOT NULL DEFAULT 0 CHECK (logs_length >= 0),
    logs_overflowed             INTEGER NOT NULL DEFAULT 0 CHECK (logs_overflowed IN (0, 1)),
    subsystems                  TEXT NOT NULL DEFAULT '[]',
    display_apps                TEXT NOT NULL DEFAULT '["vscode","vscode_insiders","web_terminal","ssh_helper","port_forwarding_helper"]',
    display_order               INTEGER NOT NULL DEFAULT 0,
    api_key_scope               TEXT NOT NULL DEFAULT 'all' CHECK (api_key_scope IN ('all', 'no_user_data')),
    deleted                     INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1))
) STRICT;
CREATE INDEX workspace_agents_auth_instance_id ON workspace_agents (auth_instance_id, deleted);
CREATE INDEX workspace_agents_resource_id ON workspace_agents (resource_id);
CREATE INDEX workspace_agents_parent_id ON workspace_agents (parent_id);

-- Agent tokens are UUIDv4 strings; only SHA-256(token) is stored.
CREATE TABLE workspace_agent_tokens (
    token_hash  BLOB PRIMARY KEY,
    agent_id    TEXT NOT NULL REFERENCES workspace_agents (id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX workspace_agent_tokens_agent_id ON workspace_agent_tokens (agent_id, created_at);

CREATE TABLE workspace_apps (
    id                     TEXT PRIMARY KEY,
    agent_id               TEXT NOT NULL REFERENCES workspace_agents (id) ON DELETE CASCADE,
    slug                   TEXT NOT NULL,
    display_name           TEXT NOT NULL DEFAULT '',
    icon                   TEXT NOT NULL DEFAULT '',
    command                TEXT NOT NULL DEFAULT '',
    url                    TEXT NOT NULL DEFAULT '',
    external               INTEGER NOT NULL DEFAULT 0,
    subdomain              INTEGER NOT NULL DEFAULT 0,
    sharing_level          TEXT NOT NULL DEFAULT 'owner' CHECK (sharing_level IN ('owner', 'authenticated', 'organization', 'public')),
    healthcheck_url        TEXT NOT NULL DEFAULT '',
    healthcheck_interval   INTEGER NOT NULL DEFAULT 0,
    healthcheck_threshold  INTEGER NOT NULL DEFAULT 0,
    health                 TEXT NOT NULL DEFAULT 'disabled' CHECK (health IN ('disabled', 'initializing', 'healthy', 'unhealthy')),
    hidden                 INTEGER NOT NULL DEFAULT 0,
    open_in                TEXT NOT NULL DEFAULT 'slim-window' CHECK (open_in IN ('slim-window', 'tab')),
    display_group          TEXT NOT NULL DEFAULT '',
    tooltip                TEXT NOT NULL DEFAULT '',
    display_order          INTEGER NOT NULL DEFAULT 0,
    created_at             INTEGER NOT NULL,
    UNIQUE (agent_id, slug)
) STRICT;

CREATE TABLE workspace_app_statuses (
    id            TEXT PRIMARY KEY,
    created_at    INTEGER NOT NULL,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    agent_id      TEXT NOT NULL REFERENCES workspace_agents (id) ON DELETE CASCADE,
    app_id        TEXT NOT NULL REFERENCES workspace_apps (id) ON DELETE CASCADE,
    state         TEXT NOT NULL CHECK (state IN ('working', 'idle', 'complete', 'failure')),
    message       TEXT NOT NULL,
    uri           TEXT
) STRICT;
CREATE INDEX workspace_app_statuses_app_id ON workspace_app_statuses (app_id, created_at DESC);

CREATE TABLE workspace_agent_log_sources (
    workspace_agent_id  TEXT NOT NULL REFERENCES workspace_agents (id) ON DELETE CASCADE,
    id                  TEXT NOT NULL,
    created_at          INTEGER NOT NULL,
    display_name        TEXT NOT NULL,
    icon                TEXT NOT NULL,
    PRIMARY KEY (workspace_agent_id, id)
) STRICT, WITHOUT ROWID;

CREATE TABLE workspace_agent_scripts (
    id                  TEXT PRIMARY KEY,
    agent_id            TEXT NOT NULL REFERENCES workspace_agents (id) ON DELETE CASCADE,
    log_source_id       TEXT NOT NULL,
    display_name        TEXT NOT NULL,
    log_path            TEXT NOT NULL DEFAULT '',
    script              TEXT NOT NULL DEFAULT '',
    cron                TEXT NOT NULL DEFAULT '',
    run_on_start        INTEGER NOT NULL DEFAULT 0,
    run_on_stop         INTEGER NOT NULL DEFAULT 0,
    start_blocks_login  INTEGER NOT NULL DEFAULT 0,
    timeout_seconds     INTEGER NOT NULL DEFAULT 0,
    created_at          INTEGER NOT NULL
) STRICT;
CREATE INDEX workspace_agent_scripts_agent_id ON workspace_agent_scripts (agent_id);

-- AUTOINCREMENT: log ids never go backwards, even after the newest rows are purged,
-- so a follower's "id > after" cursor can never skip or repeat a line.
CREATE TABLE workspace_agent_logs (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id       TEXT NOT NULL REFERENCES workspace_agents (id) ON DELETE CASCADE,
    created_at     INTEGER NOT NULL,
    output         TEXT NOT NULL,
    level          TEXT NOT NULL DEFAULT 'info' CHECK (level IN ('trace', 'debug', 'info', 'warn', 'error')),
    log_source_id  TEXT NOT NULL
) STRICT;
CREATE INDEX workspace_agent_logs_agent_id ON workspace_agent_logs (agent_id, id);
