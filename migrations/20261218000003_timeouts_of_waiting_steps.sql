-- `step_timeouts` is read only for steps waiting on an event (the sweeper's
-- `status = 'RUNNING' AND awaiting_event AND timeout_at < now()`): a step
-- in a handler is timed by its replica, and by its lease when the replica
-- dies. Indexing every RUNNING step cost each claim one more index entry on
-- the hot path; now only waiting steps are in it.
DROP INDEX step_timeouts;
CREATE INDEX step_timeouts ON step_executions (timeout_at)
    WHERE status = 'RUNNING' AND awaiting_event;
