-- Version 5: alerts.
--
-- An alert is one message to one channel about one incident, written by the daemon's alerter
-- from committed events and delivered by a sender that records every attempt. One row per
-- (channel, incident key): an alerter that reads the same events again (after a crash) finds
-- its alerts there and writes nothing twice.
CREATE TABLE alerts (
    id              INTEGER PRIMARY KEY,
    -- `kind:name` of a channel declared in sluice.toml (`slack:data-oncall`).
    channel         TEXT NOT NULL,
    -- The alerter's key of the incident (`failure/<dag>/<run>/<n>`, ...).
    incident        TEXT NOT NULL,
    -- The rule's event name (`failure`, `deadline_missed`, ...).
    rule            TEXT NOT NULL,
    dag_id          TEXT NOT NULL,
    run_id          TEXT,
    task_id         TEXT,
    -- The event the alert was made from, if one.
    event_id        INTEGER,
    -- JSON object: what the message says.
    message         TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    created_at      TEXT NOT NULL,
    -- When the sender should try next; NULL unless pending.
    next_attempt_at TEXT,
    delivered_at    TEXT,
    -- The error of the last failed attempt.
    last_error      TEXT,
    UNIQUE (channel, incident)
);
-- The sender's "pending alerts due now, oldest due first". Partial: pending alerts are few,
-- delivered ones many.
CREATE INDEX alerts_due ON alerts (next_attempt_at, id) WHERE state = 'pending';
-- "Recent alerts of a DAG, newest first"; every DAG's uses the primary key.
CREATE INDEX alerts_dag ON alerts (dag_id, id);

-- Every delivery attempt of an alert: what the channel answered, or the error.
CREATE TABLE alert_attempts (
    alert  INTEGER NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    -- 1 for the first attempt.
    number INTEGER NOT NULL CHECK (number >= 1),
    at     TEXT NOT NULL,
    ok     INTEGER NOT NULL CHECK (ok IN (0, 1)),
    -- The channel's answer when ok, else the error.
    text   TEXT NOT NULL,
    PRIMARY KEY (alert, number)
);

-- Durable positions of the readers of the event stream (the alerter): the id of the last
-- event each has dealt with. Never goes back.
CREATE TABLE cursors (
    name     TEXT PRIMARY KEY NOT NULL,
    event_id INTEGER NOT NULL
);
