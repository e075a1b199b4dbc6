-- Version 4: what the HTTP API needs.

-- The listing of every DAG's runs, newest first (`ORDER BY logical_date DESC, id DESC`), paged
-- by a keyset cursor: the index holds the rowid after the date, so a backward scan gives that
-- order and a cursor is a range of it. The listing of one DAG uses the index of
-- UNIQUE (dag_id, logical_date).
CREATE INDEX runs_logical_date ON runs (logical_date);

-- The key of the request that created a run (an API trigger's `Idempotency-Key`): one run per
-- (DAG, key). Partial: runs without a key (most) cost the index nothing, and never collide.
ALTER TABLE runs ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX runs_idempotency_key ON runs (dag_id, idempotency_key) WHERE idempotency_key IS NOT NULL;

-- API tokens: only what the caller derived from the secret (`hash`) is stored, never the
-- secret. `role` is the caller's word; the store does not know what it allows. A name is
-- unique among the tokens not revoked (revoked ones are kept, for the record).
CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL,
    hash         TEXT NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    expires_at   TEXT,
    revoked_at   TEXT,
    last_used_at TEXT
);
CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (name) WHERE revoked_at IS NULL;

-- The last success of each DAG is one step down this index per DAG; (dag_id, state) lookups
-- (the scheduler's active runs of a DAG) use its prefix as before.
DROP INDEX runs_dag_state;
CREATE INDEX runs_dag_state ON runs (dag_id, state, ended_at);
