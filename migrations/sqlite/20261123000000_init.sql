-- Sluice's SQLite schema, version 1.
--
-- Conventions:
-- * Times are TEXT in UTC, fixed width with microseconds (`2026-03-01T05:00:00.000000Z`), so
--   they compare and sort correctly as text.
-- * States are the snake_case names of `TaskState` / `RunState` (`up_for_retry`, ...).
-- * `conf`, `external_ids` and output values are JSON text.
-- * `run` (an INTEGER) is always the store's key `runs.id`; `run_id` (TEXT) is always the
--   human run id (`scheduled__2026-03-01T05:00:00+00:00`, ...).

-- One row per DAG id the daemon or the CLI has seen.
CREATE TABLE dags (
    dag_id      TEXT PRIMARY KEY NOT NULL,
    -- The file it was last loaded from (NULL when the row was created by a pause).
    file        TEXT,
    paused      INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    -- The error of the last load of its file, NULL when it loaded.
    parse_error TEXT,
    -- The text of the last version that loaded (the CLI's fallback while the file is broken).
    source      TEXT,
    updated_at  TEXT NOT NULL
);

-- No foreign key to `dags`: a run may be created (e.g. triggered from the CLI) before the
-- daemon has synced its DAG row.
CREATE TABLE runs (
    id                  INTEGER PRIMARY KEY,
    dag_id              TEXT NOT NULL,
    run_id              TEXT NOT NULL,
    kind                TEXT NOT NULL,
    logical_date        TEXT NOT NULL,
    data_interval_start TEXT NOT NULL,
    data_interval_end   TEXT NOT NULL,
    state               TEXT NOT NULL,
    conf                TEXT,
    created_at          TEXT NOT NULL,
    started_at          TEXT,
    ended_at            TEXT,
    deadline            TEXT,
    deadline_missed     INTEGER NOT NULL DEFAULT 0 CHECK (deadline_missed IN (0, 1)),
    UNIQUE (dag_id, logical_date),
    UNIQUE (dag_id, run_id)
);
-- The scheduler's "active runs of this DAG".
CREATE INDEX runs_dag_state ON runs (dag_id, state);
-- "Every run in these states", across DAGs, newest first.
CREATE INDEX runs_state_logical_date ON runs (state, logical_date);

-- One row per task per run. Rows keep their insertion order (rowid), which is the order the
-- run was created with.
CREATE TABLE task_instances (
    run         INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    task_id     TEXT NOT NULL,
    state       TEXT NOT NULL,
    -- Tries started so far (0 before the first).
    try_number  INTEGER NOT NULL DEFAULT 0 CHECK (try_number >= 0),
    max_tries   INTEGER NOT NULL CHECK (max_tries >= 0),
    next_try_at TEXT,
    started_at  TEXT,
    ended_at    TEXT,
    PRIMARY KEY (run, task_id)
);

-- One row per try of a task; kept when the task is cleared.
CREATE TABLE tries (
    run          INTEGER NOT NULL,
    task_id      TEXT NOT NULL,
    try_number   INTEGER NOT NULL CHECK (try_number >= 1),
    state        TEXT NOT NULL,
    started_at   TEXT NOT NULL,
    ended_at     TEXT,
    error        TEXT,
    -- JSON object: what the operator reported (`cluster_id`, `step_ids`, `pid`, ...).
    external_ids TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (run, task_id, try_number),
    FOREIGN KEY (run, task_id) REFERENCES task_instances (run, task_id) ON DELETE CASCADE
);
-- What a restarted daemon must recover. Partial: the running tries are few, the finished many.
CREATE INDEX tries_running ON tries (run, task_id) WHERE state = 'running';

-- Outputs of successful tasks, one row per field; `value` is JSON.
CREATE TABLE outputs (
    run     INTEGER NOT NULL,
    task_id TEXT NOT NULL,
    key     TEXT NOT NULL,
    value   TEXT NOT NULL,
    PRIMARY KEY (run, task_id, key),
    FOREIGN KEY (run, task_id) REFERENCES task_instances (run, task_id) ON DELETE CASCADE
);

-- Things worth telling people about (`deadline_missed`, `retry`, `recovered`, ...).
-- AUTOINCREMENT: ids never reused, so "newest first" is "highest id first".
CREATE TABLE events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      TEXT NOT NULL,
    dag_id  TEXT NOT NULL,
    run_id  TEXT,
    task_id TEXT,
    kind    TEXT NOT NULL,
    detail  TEXT NOT NULL
);
CREATE INDEX events_dag ON events (dag_id, id);
CREATE INDEX events_run ON events (run_id, id);
