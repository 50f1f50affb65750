-- Lists page by keyset: newest first on (created_at, id), the cursor being
-- the last row's pair (README, "Paging"). One index per common filter, each
-- ending in (created_at DESC, id DESC), so that every page, with or without
-- a cursor and with a date range, is an index scan that stops after the
-- page's rows, and a capped count is an index-only scan: a page costs the
-- same with a long history as without. They replace the indexes without
-- `id`, which could only serve the order through an extra sort.
CREATE INDEX IF NOT EXISTS executions_page ON executions (created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS executions_page_workflow ON executions (workflow_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS executions_page_status ON executions (status, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS executions_page_initiator ON executions (initiator, created_at DESC, id DESC);
-- A pipeline's or a user's executions in one state (budadmin's filters).
CREATE INDEX IF NOT EXISTS executions_page_workflow_status
    ON executions (workflow_id, status, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS executions_page_initiator_status
    ON executions (initiator, status, created_at DESC, id DESC);
DROP INDEX IF EXISTS executions_created;
DROP INDEX IF EXISTS executions_workflow;
DROP INDEX IF EXISTS executions_initiator;

-- GET /workflows and GET /pipelines list live pipelines only; the
-- definitions of `POST /executions/run` (ephemeral, one per run) would
-- otherwise be read and thrown away by every page and count.
CREATE INDEX IF NOT EXISTS workflows_page ON workflows (created_at DESC, id DESC)
    WHERE deleted_at IS NULL AND NOT ephemeral;
CREATE INDEX IF NOT EXISTS workflows_page_owner ON workflows (created_by, created_at DESC, id DESC)
    WHERE deleted_at IS NULL AND NOT ephemeral;
DROP INDEX IF EXISTS workflows_live_created;
-- Housekeeping looks for ephemeral definitions past retention.
CREATE INDEX IF NOT EXISTS workflows_ephemeral ON workflows (created_at) WHERE ephemeral;

-- The outbox publisher reads only rows that can still be published; rows
-- that failed for good (kept until retention) no longer lie on its path,
-- and retention finds them by their own index.
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (next_attempt_at) WHERE failed_at IS NULL;
CREATE INDEX IF NOT EXISTS outbox_failed ON outbox (failed_at) WHERE failed_at IS NOT NULL;
DROP INDEX IF EXISTS outbox_due;
