-- Version 3: typed events.
--
-- `data` is the event's JSON (the serde form of `EventKind`, tagged by `type`); `kind` keeps the
-- tag for filtering. `dag_id` is NULL for the daemon's own events. Ids stay the AUTOINCREMENT
-- rowid: strictly increasing in commit order, what readers resume from. Older rows become
-- `legacy` events that keep their kind and text.
CREATE TABLE events_typed (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      TEXT NOT NULL,
    dag_id  TEXT,
    run_id  TEXT,
    task_id TEXT,
    kind    TEXT NOT NULL,
    data    TEXT NOT NULL
);
INSERT INTO events_typed (id, at, dag_id, run_id, task_id, kind, data)
    SELECT id, at, dag_id, run_id, task_id, 'legacy', json_object('type', 'legacy', 'kind', kind, 'detail', detail)
    FROM events ORDER BY id;
DROP TABLE events;
ALTER TABLE events_typed RENAME TO events;
CREATE INDEX events_dag ON events (dag_id, id);
CREATE INDEX events_run ON events (run_id, id);
