-- Every status column accepts only the values the engine writes, so a typo
-- in a statement fails at once instead of leaving a row no replica reads
-- (src/engine/model.rs holds the same lists as Rust enums; tests/schema.rs
-- checks that the two agree). A future version that adds a status widens
-- the constraint in its own migration.
--
-- Validation scans each table once under this migration's lock: about a
-- second per million step rows.
ALTER TABLE executions ADD CONSTRAINT executions_status
    CHECK (status IN ('PENDING', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED'));

ALTER TABLE step_executions ADD CONSTRAINT step_executions_status
    CHECK (status IN ('PENDING', 'RUNNING', 'COMPLETED', 'FAILED', 'SKIPPED', 'TIMEOUT', 'CANCELLED'));

ALTER TABLE step_executions ADD CONSTRAINT step_executions_skip_reason
    CHECK (skip_reason IN ('condition', 'branch', 'upstream_failed'));

-- How an attempt ended: the step's status after it, or RELEASED (handed
-- back without a result, e.g. at shutdown or when a lease was lost).
ALTER TABLE step_attempts ADD CONSTRAINT step_attempts_outcome
    CHECK (outcome IN ('PENDING', 'RUNNING', 'COMPLETED', 'FAILED', 'SKIPPED', 'TIMEOUT', 'CANCELLED', 'RELEASED'));

ALTER TABLE inbound_events ADD CONSTRAINT inbound_events_status
    CHECK (status IN ('APPLIED', 'IGNORED', 'EARLY', 'CONSUMED', 'EXPIRED'));
