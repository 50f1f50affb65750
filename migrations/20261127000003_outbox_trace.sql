-- The trace an outbox event belongs to (its execution's), sent as the
-- `traceparent` of its publish so Dapr carries it into the CloudEvent.
ALTER TABLE outbox ADD COLUMN trace_id text;
