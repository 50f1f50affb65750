-- Route published events to the flow that asked (budapp's guardrail flows):
-- when set, every event published for the execution carries
-- payload.type = payload_type and payload.workflow_id = notification_workflow_id.
ALTER TABLE executions
    ADD COLUMN payload_type text,
    ADD COLUMN notification_workflow_id text;

-- The latest stage a long operation reported for a waiting step
-- ({operation, stage, status, message, progress, eta_minutes, at}).
ALTER TABLE step_executions ADD COLUMN stage jsonb;
