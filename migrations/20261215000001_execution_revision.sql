-- A counter bumped by every transaction that changes an execution's step
-- rows (a transition, a claim, a quarantine). A replica that keeps the rows
-- it last wrote in memory reads this under the execution's lock and reuses
-- them only when it still matches, so a transition on a big DAG loads one
-- row instead of all of them. Lease renewals do not bump it: they change
-- only `lease_expires_at`, which the cached paths never read.
ALTER TABLE executions ADD COLUMN revision bigint NOT NULL DEFAULT 0;
