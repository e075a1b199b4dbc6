-- Sluice's PostgreSQL schema, version 1: the same tables as the SQLite schema after its
-- fifth migration (`migrations/sqlite/`), in PostgreSQL's own types.
--
-- Conventions:
-- * Times are TIMESTAMPTZ (microseconds, as SQLite's text keeps them).
-- * States are the snake_case names of `TaskState` / `RunState` (`up_for_retry`, ...).
-- * `conf`, `external_ids`, output values, event data and alert messages are `json`: checked
--   on the way in and kept as written (`jsonb` would reorder an object's keys, and a run's conf
--   is shown back the way it was given).
-- * `run` (a BIGINT) is always the store's key `runs.id`; `run_id` (TEXT) is always the human
--   run id.
-- * Lock order, for every writing transaction: `runs` rows, then `task_instances` rows in
--   (run, task_id) order, then `tries`, `outputs`, and last the event lock (see `events`).
--   Two transactions that follow it never deadlock.

CREATE TABLE dags (
    dag_id         TEXT PRIMARY KEY,
    -- The file it was last loaded from (NULL when the row was created by a pause).
    file           TEXT,
    paused         BOOLEAN NOT NULL DEFAULT FALSE,
    -- The error of the last load of its file, NULL when it loaded.
    parse_error    TEXT,
    -- The text of the last version that loaded (the CLI's fallback while the file is broken).
    source         TEXT,
    updated_at     TIMESTAMPTZ NOT NULL,
    -- Why the scheduler stopped scheduling a DAG whose file loads; cleared by a new version.
    schedule_error TEXT
);

-- No foreign key to `dags`: a run may be created (e.g. triggered from the CLI) before the
-- daemon has synced its DAG row.
CREATE TABLE runs (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dag_id              TEXT NOT NULL,
    run_id              TEXT NOT NULL,
    kind                TEXT NOT NULL,
    logical_date        TIMESTAMPTZ NOT NULL,
    data_interval_start TIMESTAMPTZ NOT NULL,
    data_interval_end   TIMESTAMPTZ NOT NULL,
    state               TEXT NOT NULL,
    conf                JSON,
    created_at          TIMESTAMPTZ NOT NULL,
    -- The start of the run's latest attempt (a cleared run starts again).
    started_at          TIMESTAMPTZ,
    ended_at            TIMESTAMPTZ,
    deadline            TIMESTAMPTZ,
    deadline_missed     BOOLEAN NOT NULL DEFAULT FALSE,
    first_started_at    TIMESTAMPTZ,
    -- The key of the request that created the run (an API trigger's `Idempotency-Key`).
    idempotency_key     TEXT,
    UNIQUE (dag_id, logical_date),
    UNIQUE (dag_id, run_id)
);
-- The scheduler's "active runs of this DAG", and a DAG's last success one step down it.
CREATE INDEX runs_dag_state ON runs (dag_id, state, ended_at);
-- "Every run in these states", across DAGs, newest first.
CREATE INDEX runs_state_logical_date ON runs (state, logical_date);
-- The listing of every DAG's runs, newest first (`logical_date DESC, id DESC`).
CREATE INDEX runs_logical_date ON runs (logical_date, id);
-- One run per (DAG, key); runs without a key cost the index nothing.
CREATE UNIQUE INDEX runs_idempotency_key ON runs (dag_id, idempotency_key) WHERE idempotency_key IS NOT NULL;

-- One row per task per run. `seq` keeps the order the run was created with.
CREATE TABLE task_instances (
    run         BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    task_id     TEXT NOT NULL,
    seq         BIGINT GENERATED ALWAYS AS IDENTITY,
    state       TEXT NOT NULL,
    -- Tries started so far (0 before the first).
    try_number  BIGINT NOT NULL DEFAULT 0 CHECK (try_number >= 0),
    max_tries   BIGINT NOT NULL CHECK (max_tries >= 0),
    next_try_at TIMESTAMPTZ,
    started_at  TIMESTAMPTZ,
    ended_at    TIMESTAMPTZ,
    PRIMARY KEY (run, task_id)
);

-- One row per try of a task; kept when the task is cleared.
CREATE TABLE tries (
    run          BIGINT NOT NULL,
    task_id      TEXT NOT NULL,
    try_number   BIGINT NOT NULL CHECK (try_number >= 1),
    seq          BIGINT GENERATED ALWAYS AS IDENTITY,
    state        TEXT NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL,
    ended_at     TIMESTAMPTZ,
    error        TEXT,
    -- What the operator reported (`cluster_id`, `step_ids`, `pid`, ...).
    external_ids JSON NOT NULL DEFAULT '{}',
    PRIMARY KEY (run, task_id, try_number),
    FOREIGN KEY (run, task_id) REFERENCES task_instances (run, task_id) ON DELETE CASCADE
);
-- What a restarted daemon must recover. Partial: the running tries are few, the finished many.
CREATE INDEX tries_running ON tries (run, task_id) WHERE state = 'running';

-- Outputs of successful tasks, one row per field.
CREATE TABLE outputs (
    run     BIGINT NOT NULL,
    task_id TEXT NOT NULL,
    key     TEXT NOT NULL,
    value   JSON NOT NULL,
    PRIMARY KEY (run, task_id, key),
    FOREIGN KEY (run, task_id) REFERENCES task_instances (run, task_id) ON DELETE CASCADE
);

-- Typed events. Ids must be strictly increasing in commit order (readers resume after an id),
-- which a sequence alone does not give: two transactions can take ids 1 and 2 and commit 2
-- first. Every transaction that writes events therefore takes the transaction-scoped advisory
-- lock `pg_advisory_xact_lock(<events key>)` just before it inserts them, as its last step
-- before the commit: ids are handed out, and commits happen, in the order of that lock.
CREATE TABLE events (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      TIMESTAMPTZ NOT NULL,
    -- NULL for the daemon's own events.
    dag_id  TEXT,
    run_id  TEXT,
    -- The run's key (`runs.id`).
    run     BIGINT,
    task_id TEXT,
    -- The tag of `data` (its `type`), for filtering.
    kind    TEXT NOT NULL,
    data    JSON NOT NULL
);
CREATE INDEX events_dag ON events (dag_id, id);
CREATE INDEX events_run ON events (run, id);

-- API tokens: only what the caller derived from the secret (`hash`), never the secret.
CREATE TABLE api_tokens (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL,
    hash         TEXT NOT NULL UNIQUE,
    created_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ
);
CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (name) WHERE revoked_at IS NULL;

-- Alerts: one message to one channel about one incident; one row per (channel, incident).
CREATE TABLE alerts (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel         TEXT NOT NULL,
    incident        TEXT NOT NULL,
    rule            TEXT NOT NULL,
    dag_id          TEXT NOT NULL,
    run_id          TEXT,
    task_id         TEXT,
    event_id        BIGINT,
    message         JSON NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        BIGINT NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    created_at      TIMESTAMPTZ NOT NULL,
    next_attempt_at TIMESTAMPTZ,
    delivered_at    TIMESTAMPTZ,
    last_error      TEXT,
    UNIQUE (channel, incident)
);
CREATE INDEX alerts_due ON alerts (next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX alerts_dag ON alerts (dag_id, id);

CREATE TABLE alert_attempts (
    alert  BIGINT NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    number BIGINT NOT NULL CHECK (number >= 1),
    at     TIMESTAMPTZ NOT NULL,
    ok     BOOLEAN NOT NULL,
    text   TEXT NOT NULL,
    PRIMARY KEY (alert, number)
);

-- Durable positions of the readers of the event stream (the alerter). Never go back.
CREATE TABLE cursors (
    name     TEXT PRIMARY KEY,
    event_id BIGINT NOT NULL
);
