-- The mesh's audit log: sign-ins, failed sign-ins, lock-outs, role changes and every call of an
-- RPC marked `audited` in the protos, allowed or not. Append-only for the application.
CREATE TABLE events (
    event_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL DEFAULT '',
    action      text NOT NULL,
    target      text NOT NULL DEFAULT '',
    outcome     text NOT NULL,
    detail      text NOT NULL DEFAULT '',
    request_id  text NOT NULL DEFAULT ''
);

CREATE INDEX events_actor ON events (actor, event_id DESC);
CREATE INDEX events_action ON events (action, event_id DESC);
