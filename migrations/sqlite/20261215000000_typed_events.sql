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
    -- The run's key (`runs.id`): runs are found by an index of integers, far smaller and
    -- cheaper to keep than one of run ids.
    run     INTEGER,
    task_id TEXT,
    kind    TEXT NOT NULL,
    data    TEXT NOT NULL
);
INSERT INTO events_typed (id, at, dag_id, run_id, run, task_id, kind, data)
    SELECT e.id, e.at, e.dag_id, e.run_id, (SELECT r.id FROM runs r WHERE r.dag_id = e.dag_id AND r.run_id = e.run_id),
        e.task_id, 'legacy', json_object('type', 'legacy', 'kind', e.kind, 'detail', e.detail)
    FROM events e ORDER BY e.id;
DROP TABLE events;
ALTER TABLE events_typed RENAME TO events;
CREATE INDEX events_dag ON events (dag_id, id);
CREATE INDEX events_run ON events (run, id);
