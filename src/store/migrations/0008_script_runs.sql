-- The last run of each agent script, as the agent reports it (ScriptCompleted
-- on /me/rpc): GET agent shows `exit_code` and `status` of the run that
-- started last, as coderd does from its script timings. appliance keeps the
-- latest run only, so a cron script every minute does not grow the file.
ALTER TABLE workspace_agent_scripts ADD COLUMN last_started_at INTEGER;
ALTER TABLE workspace_agent_scripts ADD COLUMN last_ended_at INTEGER;
ALTER TABLE workspace_agent_scripts ADD COLUMN last_exit_code INTEGER;
ALTER TABLE workspace_agent_scripts ADD COLUMN last_stage TEXT
    CHECK (last_stage IN ('start', 'stop', 'cron'));
ALTER TABLE workspace_agent_scripts ADD COLUMN last_status TEXT
    CHECK (last_status IN ('ok', 'exit_failure', 'timed_out', 'pipes_left_open'));
