-- What budapp and budadmin keep on a pipeline (COMPAT.md "Pipelines"): a
-- pipeline is a workflow. The owner is `created_by` (the original's
-- `user_id`); names stay unique per owner.
ALTER TABLE workflows
    ADD COLUMN system_owned boolean NOT NULL DEFAULT false,
    ADD COLUMN icon text,
    -- `draft`: stored without steps, editable, not executable.
    ADD COLUMN status text NOT NULL DEFAULT 'active',
    -- The definition of one `POST /executions/run`: not a pipeline anyone
    -- lists or edits, kept only as the version its execution points at.
    ADD COLUMN ephemeral boolean NOT NULL DEFAULT false,
    ADD CONSTRAINT workflows_status CHECK (status IN ('draft', 'active', 'archived'));

DROP INDEX workflows_live_name;
CREATE UNIQUE INDEX workflows_live_name ON workflows (name, coalesce(created_by, ''))
    WHERE deleted_at IS NULL AND NOT ephemeral;

-- GET /executions?initiator=…
CREATE INDEX executions_initiator ON executions (initiator, created_at DESC);
