-- Triggers (COMPAT.md "Triggers"): schedules, webhooks and event triggers,
-- kept here with the rest of the state instead of a Dapr state store.

-- A schedule starts its pipeline at its due times. `next_run_at` is the
-- next due time; a replica fires it by locking the row (FOR UPDATE SKIP
-- LOCKED), recording the firing and the execution it starts, and moving
-- `next_run_at` on, all in one transaction.
CREATE TABLE schedules (
    id                uuid PRIMARY KEY,
    workflow_id       uuid NOT NULL REFERENCES workflows (id),
    name              text NOT NULL,
    description       text,
    schedule_type     text NOT NULL CHECK (schedule_type IN ('cron', 'interval', 'one_time', 'manual')),
    expression        text,
    timezone          text NOT NULL DEFAULT 'UTC',
    run_at            timestamptz,
    params            jsonb NOT NULL DEFAULT '{}',
    enabled           boolean NOT NULL DEFAULT true,
    -- active, paused, expired (past expires_at), completed (max_runs reached, or a one-time run done)
    status            text NOT NULL CHECK (status IN ('active', 'paused', 'expired', 'completed')),
    next_run_at       timestamptz,
    last_run_at       timestamptz,
    last_execution_id uuid,
    run_count         integer NOT NULL DEFAULT 0,
    -- Due times whose execution could not start (the pipeline was deleted,
    -- is a draft, or refuses the parameters), and the latest reason.
    failure_count     integer NOT NULL DEFAULT 0,
    last_error        text,
    last_error_at     timestamptz,
    max_runs          integer CHECK (max_runs >= 1),
    expires_at        timestamptz,
    created_by        text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX schedules_due ON schedules (next_run_at) WHERE status = 'active' AND next_run_at IS NOT NULL;
CREATE INDEX schedules_workflow ON schedules (workflow_id);

-- One row per (schedule, due time) that fired: the key that makes a
-- schedule fire once per due time whatever the number of replicas.
-- `execution_id` is NULL when the execution could not start (`error` says why).
CREATE TABLE schedule_firings (
    schedule_id  uuid NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    due_at       timestamptz NOT NULL,
    execution_id uuid,
    error        text,
    replica_id   uuid NOT NULL,
    fired_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schedule_id, due_at)
);
CREATE INDEX schedule_firings_fired ON schedule_firings (fired_at);

-- A webhook starts its pipeline on POST /trigger/{id}. The secret is
-- stored as its SHA-256 (it is 256 random bits, so no salt is needed).
CREATE TABLE webhooks (
    id                 uuid PRIMARY KEY,
    workflow_id        uuid NOT NULL REFERENCES workflows (id),
    name               text NOT NULL,
    secret_hash        text,
    allowed_ips        text[],
    headers_to_include text[] NOT NULL DEFAULT '{}',
    params             jsonb NOT NULL DEFAULT '{}',
    enabled            boolean NOT NULL DEFAULT true,
    trigger_count      integer NOT NULL DEFAULT 0,
    last_triggered_at  timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhooks_workflow ON webhooks (workflow_id);

-- An event trigger starts its pipeline for each event of its type whose
-- fields match its filters.
CREATE TABLE event_triggers (
    id                uuid PRIMARY KEY,
    workflow_id       uuid NOT NULL REFERENCES workflows (id),
    name              text NOT NULL,
    event_type        text NOT NULL,
    filters           jsonb NOT NULL DEFAULT '{}',
    params            jsonb NOT NULL DEFAULT '{}',
    enabled           boolean NOT NULL DEFAULT true,
    trigger_count     integer NOT NULL DEFAULT 0,
    last_triggered_at timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX event_triggers_type ON event_triggers (event_type) WHERE enabled;

-- One row per (trigger, event): a redelivered event starts nothing new.
CREATE TABLE event_trigger_firings (
    trigger_id   uuid NOT NULL REFERENCES event_triggers (id) ON DELETE CASCADE,
    event_source text NOT NULL,
    event_id     text NOT NULL,
    execution_id uuid,
    error        text,
    fired_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (trigger_id, event_source, event_id)
);
CREATE INDEX event_trigger_firings_fired ON event_trigger_firings (fired_at);
