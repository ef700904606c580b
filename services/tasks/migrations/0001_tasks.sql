-- Tasks, their attempts and the dispatch outbox. Runs with search_path = tasks.

-- One row per task: the record of truth. owner_id is the access token's `sub` (no foreign key:
-- the accounts belong to another role's schema). payload, result and error are serialised
-- protobuf (google.protobuf.Struct, google.rpc.Status): what travels over NATS, byte for byte.
-- attempt is the current (or last) attempt, counting from 1; attempt_allowance is how many
-- attempts one grant gives (the request's max_attempts): a re-queued dead letter gets that
-- many more. version grows with every change (the watchers' "has it changed" test).
CREATE TABLE tasks (
    id                    uuid PRIMARY KEY,
    owner_id              text NOT NULL CHECK (char_length(owner_id) BETWEEN 1 AND 128),
    type                  text NOT NULL CHECK (type ~ '^[a-z0-9._-]{1,128}$'),
    payload               bytea NOT NULL CHECK (octet_length(payload) <= 65536),
    priority              smallint NOT NULL CHECK (priority BETWEEN 0 AND 3),
    required_capabilities text[] NOT NULL DEFAULT '{}'
                          CHECK (cardinality(required_capabilities) <= 16),
    resource_types        smallint[] NOT NULL DEFAULT '{}',
    resource_amounts      double precision[] NOT NULL DEFAULT '{}'
                          CHECK (cardinality(resource_amounts) = cardinality(resource_types)),
    timeout_seconds       integer NOT NULL CHECK (timeout_seconds BETWEEN 1 AND 86400),
    idempotency_key       text CHECK (char_length(idempotency_key) BETWEEN 1 AND 128),
    state                 text NOT NULL
                          CHECK (state IN ('pending', 'queued', 'running', 'succeeded', 'failed',
                                           'cancelled')),
    waiting_reason        text NOT NULL DEFAULT '' CHECK (char_length(waiting_reason) <= 512),
    attempt               integer NOT NULL CHECK (attempt >= 1),
    max_attempts          integer NOT NULL CHECK (max_attempts >= 1),
    attempt_allowance     integer NOT NULL CHECK (attempt_allowance BETWEEN 1 AND 10),
    agent_id              text NOT NULL DEFAULT '' CHECK (char_length(agent_id) <= 256),
    progress              double precision NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 1),
    progress_message      text NOT NULL DEFAULT '' CHECK (char_length(progress_message) <= 512),
    result                bytea CHECK (octet_length(result) <= 262144),
    error                 bytea,
    dead_lettered         boolean NOT NULL DEFAULT false,
    dead_letter_sequence  bigint,
    created_at            timestamptz NOT NULL DEFAULT now(),
    queued_at             timestamptz,
    started_at            timestamptz,
    finished_at           timestamptz,
    updated_at            timestamptz NOT NULL DEFAULT now(),
    version               bigint NOT NULL DEFAULT 1
);

-- A repeated idempotency key of the same owner finds the original; the constraint makes two
-- concurrent creates with one key end with one task.
CREATE UNIQUE INDEX tasks_idempotency ON tasks (owner_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- ListTasks pages newest first on (created_at, id), for one owner or for everyone, optionally
-- by state, type or agent.
CREATE INDEX tasks_owner_recent ON tasks (owner_id, created_at DESC, id DESC);
CREATE INDEX tasks_recent ON tasks (created_at DESC, id DESC);
CREATE INDEX tasks_owner_state_recent ON tasks (owner_id, state, created_at DESC, id DESC);
CREATE INDEX tasks_state_recent ON tasks (state, created_at DESC, id DESC);
CREATE INDEX tasks_type_recent ON tasks (type, created_at DESC, id DESC);
CREATE INDEX tasks_agent_recent ON tasks (agent_id, created_at DESC, id DESC) WHERE agent_id <> '';
-- The queue bound counts unfinished tasks.
CREATE INDEX tasks_unfinished ON tasks (state) WHERE state IN ('pending', 'queued', 'running');
-- ListDeadLetters, newest first; WatchTasks catching up after missed notifications.
CREATE INDEX tasks_dead_letters ON tasks (finished_at DESC, id DESC) WHERE dead_lettered;
CREATE INDEX tasks_updated ON tasks (updated_at);

-- Every attempt: the agent it was given to and how it ended (state as in tasks).
CREATE TABLE attempts (
    task_id     uuid NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    number      integer NOT NULL CHECK (number >= 1),
    agent_id    text NOT NULL DEFAULT '' CHECK (char_length(agent_id) <= 256),
    state       text NOT NULL
                CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    started_at  timestamptz,
    finished_at timestamptz,
    error       bytea,
    PRIMARY KEY (task_id, number)
);

-- Messages to publish to JetStream, written in the transaction of the change they announce
-- and deleted once JetStream acknowledged them: a dispatch (subject sutazai.tasks.queue.<p>),
-- a report (sutazai.reports.tasks) or the deletion of a re-queued dead letter (subject empty,
-- dead_letter_sequence set). msg_id is the Nats-Msg-Id, so a repeated publish is a duplicate.
CREATE TABLE outbox (
    seq                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id              uuid NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    kind                 text NOT NULL CHECK (kind IN ('dispatch', 'report', 'delete_dead')),
    attempt              integer NOT NULL,
    subject              text NOT NULL DEFAULT '',
    msg_id               text NOT NULL DEFAULT '',
    body                 bytea NOT NULL DEFAULT '',
    dead_letter_sequence bigint,
    created_at           timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX outbox_task ON outbox (task_id);

-- Every change of a task bumps its version and updated_at, whoever writes it.
CREATE FUNCTION touch_task() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog
AS $$
BEGIN
    NEW.version := OLD.version + 1;
    NEW.updated_at := clock_timestamp();
    RETURN NEW;
END
$$;

CREATE TRIGGER tasks_touch BEFORE UPDATE ON tasks
    FOR EACH ROW EXECUTE FUNCTION touch_task();

-- Push, not polling: every created or changed task wakes the watchers of every instance
-- (WatchTask, WatchTasks) on channel sutazai_<schema>. The payload, the task's id, is only a
-- hint (any role may NOTIFY): watchers re-read the table and check who may see the task.
CREATE FUNCTION notify_task() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog
AS $$
BEGIN
    PERFORM pg_notify('sutazai_' || TG_TABLE_SCHEMA, NEW.id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER tasks_notify AFTER INSERT OR UPDATE ON tasks
    FOR EACH ROW EXECUTE FUNCTION notify_task();
