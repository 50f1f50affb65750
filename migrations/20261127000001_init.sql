-- Workflow definitions. A PUT keeps the old DAG in workflow_versions so that
-- executions can point at the exact version they ran.
CREATE TABLE workflows (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    created_by  text,
    version     integer NOT NULL,
    description text,
    dag         jsonb NOT NULL,
    step_count  integer NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);
-- A missing created_by counts as one value, so two unowned workflows collide.
CREATE UNIQUE INDEX workflows_live_name ON workflows (name, coalesce(created_by, ''))
    WHERE deleted_at IS NULL;
CREATE INDEX workflows_live_created ON workflows (created_at DESC) WHERE deleted_at IS NULL;

CREATE TABLE workflow_versions (
    workflow_id uuid NOT NULL REFERENCES workflows (id),
    version     integer NOT NULL,
    dag         jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow_id, version)
);

CREATE TABLE executions (
    id               uuid PRIMARY KEY,
    workflow_id      uuid NOT NULL REFERENCES workflows (id),
    workflow_version integer NOT NULL,
    status           text NOT NULL,
    parameters       jsonb NOT NULL,
    outputs          jsonb NOT NULL DEFAULT '{}',
    error            text,
    callback_topics  text[] NOT NULL DEFAULT '{}',
    initiator        text NOT NULL,
    subscriber_ids   text,
    idempotency_key  text,
    request_hash     text,
    total_steps      integer NOT NULL,
    finished_steps   integer NOT NULL DEFAULT 0,
    deadline_at      timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    completed_at     timestamptz,
    FOREIGN KEY (workflow_id, workflow_version) REFERENCES workflow_versions (workflow_id, version)
);
CREATE UNIQUE INDEX executions_idempotency ON executions (workflow_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX executions_created ON executions (created_at DESC);
CREATE INDEX executions_workflow ON executions (workflow_id, created_at DESC);
CREATE INDEX executions_deadline ON executions (deadline_at) WHERE status = 'RUNNING';
CREATE INDEX executions_finished ON executions (completed_at)
    WHERE status IN ('COMPLETED', 'FAILED', 'CANCELLED');

-- One row per step of an execution. `available_at` is set once the step may
-- run (its dependencies are satisfied and the execution's parallelism allows
-- it); a future value is a retry backoff.
CREATE TABLE step_executions (
    execution_id         uuid NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    step_id              text NOT NULL,
    position             integer NOT NULL,
    name                 text NOT NULL,
    action               text NOT NULL,
    status               text NOT NULL DEFAULT 'PENDING',
    available_at         timestamptz,
    attempt              integer NOT NULL DEFAULT 0,
    failures             integer NOT NULL DEFAULT 0,
    lease_owner          uuid,
    lease_expires_at     timestamptz,
    awaiting_event       boolean NOT NULL DEFAULT false,
    external_workflow_id text,
    timeout_at           timestamptz,
    -- seconds one attempt may take, waiting included (step's own or the action's default)
    timeout_seconds      double precision,
    outputs              jsonb,
    error                text,
    skip_reason          text,
    progress             double precision,
    started_at           timestamptz,
    completed_at         timestamptz,
    PRIMARY KEY (execution_id, step_id)
);
CREATE INDEX step_claimable ON step_executions (available_at)
    WHERE status = 'PENDING' AND available_at IS NOT NULL;
-- Two steps can never wait on one correlation id at once.
CREATE UNIQUE INDEX step_waiting ON step_executions (external_workflow_id) WHERE awaiting_event;
CREATE INDEX step_external ON step_executions (external_workflow_id)
    WHERE external_workflow_id IS NOT NULL;
CREATE INDEX step_timeouts ON step_executions (timeout_at) WHERE status = 'RUNNING';
CREATE INDEX step_leases ON step_executions (lease_expires_at)
    WHERE status = 'RUNNING' AND NOT awaiting_event;

-- Every event delivered to /workflow-events, deduplicated on (source, id).
-- status: APPLIED, IGNORED, EARLY (kept until a step records its wait),
-- CONSUMED (an early event later applied), EXPIRED.
CREATE TABLE inbound_events (
    source         text NOT NULL,
    id             text NOT NULL,
    correlation_id text NOT NULL,
    body           jsonb NOT NULL,
    status         text NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz,
    PRIMARY KEY (source, id)
);
CREATE INDEX inbound_events_early ON inbound_events (correlation_id, received_at) WHERE status = 'EARLY';
CREATE INDEX inbound_events_received ON inbound_events (received_at);

-- Transactional outbox of progress events, drained by the publisher.
CREATE TABLE outbox (
    id              bigserial PRIMARY KEY,
    event_id        text NOT NULL,
    topic           text NOT NULL,
    body            jsonb NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_due ON outbox (next_attempt_at);

-- One row per attempt of a step: who ran it and when its claim ended. It
-- lets an operator read a stuck step's history, and lets tests prove that
-- no two attempts of a step ever overlapped.
CREATE TABLE step_attempts (
    execution_id uuid NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    step_id      text NOT NULL,
    attempt      integer NOT NULL,
    replica_id   uuid NOT NULL,
    started_at   timestamptz NOT NULL,
    ended_at     timestamptz,
    outcome      text,
    PRIMARY KEY (execution_id, step_id, attempt)
);
