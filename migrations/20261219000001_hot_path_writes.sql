-- Cheaper writes on the path every step takes (ENGINE.md's throughput
-- target: at least the rate of a bare SQL job queue).
--
-- Step rows and attempt rows are written only by the engine, in a
-- transaction that has inserted or locked their execution's row, so their
-- foreign keys to `executions` never caught anything; yet each inserted
-- row paid for one: a lookup of the execution and a lock on its row, with a
-- WAL record, twice a step. Retention now deletes an execution's steps and
-- attempts in the statement that deletes it (db/executions.rs), which is
-- what ON DELETE CASCADE did.
ALTER TABLE step_executions DROP CONSTRAINT step_executions_execution_id_fkey;
ALTER TABLE step_attempts DROP CONSTRAINT step_attempts_execution_id_fkey;

-- The key (workflow_id, workflow_version) -> workflow_versions already
-- implies this one, and workflow_versions' own key to workflows.
ALTER TABLE executions DROP CONSTRAINT executions_workflow_id_fkey;

-- Every transition rewrites its execution's row (revision, finished steps)
-- without changing an indexed column: a HOT update, with no new entry in
-- any of the row's ten indexes, when the page has room for the new
-- version. In the bench's throughput run 7 % of them found their page full
-- and wrote eight index entries each; with a fifth of each page kept free
-- for new versions, 2 %.
ALTER TABLE executions SET (fillfactor = 80);
