-- The execution an outbox event belongs to, so its publish span is a child
-- of the execution's span in the trace store (the span id is derived from
-- the execution id). NULL in rows written by earlier versions: their
-- publishes still carry the execution's trace id.
ALTER TABLE outbox ADD COLUMN execution_id uuid;
