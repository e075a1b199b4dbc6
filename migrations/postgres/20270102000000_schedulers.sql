-- Several schedulers on one database: who is alive (a lease in database time), and who holds
-- each running try (an owner and a fencing token).

CREATE TABLE schedulers (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    host        TEXT NOT NULL,
    pid         BIGINT NOT NULL,
    started_at  TIMESTAMPTZ NOT NULL,
    renewed_at  TIMESTAMPTZ NOT NULL,
    -- Past this instant (the database's clock) the scheduler is dead to the others: they take
    -- its tries over.
    lease_until TIMESTAMPTZ NOT NULL,
    -- Set by a clean stop.
    stopped_at  TIMESTAMPTZ
);
CREATE INDEX schedulers_lease ON schedulers (lease_until);

-- The scheduler holding a running try (NULL: a process that is no scheduler, `dagctl test`),
-- and its fencing token: 1 when the try starts, one more at every change of owner. Every
-- write for the try compares both.
ALTER TABLE tries ADD COLUMN owner BIGINT;
ALTER TABLE tries ADD COLUMN token BIGINT NOT NULL DEFAULT 1;
CREATE INDEX tries_running_owner ON tries (owner) WHERE state = 'running';
-- The pool a try took a slot of: pools are counted over every scheduler's running tries.
ALTER TABLE tries ADD COLUMN pool TEXT;
