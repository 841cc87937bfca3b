-- Agent metadata (CONNECTIVITY.md §1.8, WorkspaceAgentMetadata): what each
-- agent collects, as the workspace manifest declares it (sent in the agent's
-- manifest), and the last result the agent reported for each key
-- (BatchUpdateMetadata). A result for a key the manifest does not declare is
-- dropped, as upstream.
CREATE TABLE workspace_agent_metadata (
    agent_id          TEXT NOT NULL REFERENCES workspace_agents (id) ON DELETE CASCADE,
    key               TEXT NOT NULL,
    display_name      TEXT NOT NULL DEFAULT '',
    script            TEXT NOT NULL,
    interval_seconds  INTEGER NOT NULL CHECK (interval_seconds >= 1),
    timeout_seconds   INTEGER NOT NULL DEFAULT 0 CHECK (timeout_seconds >= 0),
    display_order     INTEGER NOT NULL DEFAULT 0,
    value             TEXT NOT NULL DEFAULT '',
    error             TEXT NOT NULL DEFAULT '',
    -- NULL until the agent reports a result.
    collected_at      INTEGER,
    PRIMARY KEY (agent_id, key)
) STRICT, WITHOUT ROWID;
