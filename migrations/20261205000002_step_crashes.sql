-- Attempts of a step that ended with their replica dying (lease expired
-- without a result), in a row; reset when an attempt ends with a result.
-- At STEP_CRASH_LIMIT the step fails instead of being re-claimed forever.
ALTER TABLE step_executions ADD COLUMN crashes integer NOT NULL DEFAULT 0;

-- Outbox rows that can never be published (a topic no broker accepts) are
-- kept, failed, instead of being retried forever ahead of their topic.
ALTER TABLE outbox ADD COLUMN failed_at timestamptz;
