-- The W3C trace id an execution continues (from the request that started
-- it, else derived from the execution id), sent on every outbound call.
ALTER TABLE executions ADD COLUMN trace_id text;
