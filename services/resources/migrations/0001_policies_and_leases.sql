-- Policies and leases. Runs with search_path = the service's schema.

-- One row per resource type. An allocation locks its resource's row (SELECT ... FOR UPDATE) for
-- the whole of its transaction: allocations of one resource are serialized across every
-- instance, those of different resources run side by side, and no transaction ever holds two
-- policy rows, so they cannot deadlock. A policy change takes the same row lock.
CREATE TABLE policies (
    resource_type          text PRIMARY KEY
                           CHECK (resource_type IN ('cpu', 'memory', 'disk', 'network', 'gpu')),
    max_total_percent      double precision NOT NULL
                           CHECK (max_total_percent BETWEEN 1 AND 100),
    max_per_holder_percent double precision NOT NULL
                           CHECK (max_per_holder_percent BETWEEN 1 AND 100),
    oversubscription_ratio double precision NOT NULL
                           CHECK (oversubscription_ratio BETWEEN 1 AND 4),
    exclusive              boolean NOT NULL,
    updated_at             timestamptz NOT NULL DEFAULT now(),
    updated_by             text NOT NULL DEFAULT ''
);

-- The original system's table (ORIGINAL_SYSTEM §3.6; domain.DEFAULT_POLICIES).
INSERT INTO policies (resource_type, max_total_percent, max_per_holder_percent,
                      oversubscription_ratio, exclusive)
VALUES ('cpu', 80, 30, 1, false),
       ('memory', 85, 25, 1, false),
       ('gpu', 90, 50, 1, true),
       ('disk', 90, 20, 1, false),
       ('network', 95, 15, 1.5, false);

-- Live leases. A lease whose expires_at has passed no longer counts (every read filters on
-- it); the sweeper deletes it later, under its resource's policy lock.
CREATE TABLE leases (
    id            uuid PRIMARY KEY,
    holder        text NOT NULL CHECK (char_length(holder) BETWEEN 1 AND 128),
    resource_type text NOT NULL REFERENCES policies (resource_type),
    amount        double precision NOT NULL CHECK (amount > 0),
    priority      smallint NOT NULL CHECK (priority BETWEEN 0 AND 3),
    task_id       uuid,
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    CHECK (expires_at > created_at)
);

CREATE INDEX leases_resource_expiry ON leases (resource_type, expires_at);
CREATE INDEX leases_created ON leases (created_at, id);
