-- Conversations and their messages. Runs with search_path = chat.

-- One row per conversation; user_id is the access token's `sub` (the auth service's user id;
-- no foreign key: the schemas belong to different roles). updated_at moves with every stored
-- message, so a user's list pages newest first on (updated_at, id).
CREATE TABLE conversations (
    id            uuid PRIMARY KEY,
    user_id       text NOT NULL CHECK (char_length(user_id) BETWEEN 1 AND 128),
    title         text NOT NULL CHECK (char_length(title) <= 200),
    model         text NOT NULL CHECK (char_length(model) BETWEEN 1 AND 256),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    message_count integer NOT NULL DEFAULT 0 CHECK (message_count >= 0)
);

CREATE INDEX conversations_user_recent ON conversations (user_id, updated_at DESC, id DESC);

-- Messages in the order they were stored (seq). The system prompt, if any, is the first.
-- finish_reason says how a reply ended: 'stop', 'length', or 'cancelled' (the caller went away
-- and the partial text was kept); empty for the user's and the system's messages.
CREATE TABLE messages (
    seq               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id                uuid NOT NULL UNIQUE,
    conversation_id   uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role              text NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
    content           text NOT NULL,
    model             text NOT NULL DEFAULT '',
    prompt_tokens     integer NOT NULL DEFAULT 0 CHECK (prompt_tokens >= 0),
    completion_tokens integer NOT NULL DEFAULT 0 CHECK (completion_tokens >= 0),
    latency_ms        double precision NOT NULL DEFAULT 0 CHECK (latency_ms >= 0),
    cached            boolean NOT NULL DEFAULT false,
    finish_reason     text NOT NULL DEFAULT ''
                      CHECK (finish_reason IN ('', 'stop', 'length', 'cancelled')),
    created_at        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX messages_conversation ON messages (conversation_id, seq);
