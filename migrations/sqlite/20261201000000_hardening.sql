-- Version 2: what the hardening of the scheduler needs.

-- `started_at` is now the start of the run's latest attempt (a cleared run that runs again
-- starts again); `first_started_at` keeps when it first ran.
ALTER TABLE runs ADD COLUMN first_started_at TEXT;
UPDATE runs SET first_started_at = started_at;

-- A DAG that loaded but whose schedule could not be computed at run time (the daemon stopped
-- scheduling it; the other DAGs go on). Cleared when a new version of the file loads.
ALTER TABLE dags ADD COLUMN schedule_error TEXT;
