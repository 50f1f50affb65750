-- Why an execution ended is data, not message text: a handler's result that
-- arrives after its execution ended is recorded TIMEOUT when the execution
-- ran out of time and CANCELLED otherwise, and the engine used to tell the
-- two apart by the prefix of the execution's error.
ALTER TABLE executions ADD COLUMN timed_out boolean NOT NULL DEFAULT false;

UPDATE executions SET timed_out = true
WHERE status = 'FAILED' AND error LIKE 'execution timed out%';
