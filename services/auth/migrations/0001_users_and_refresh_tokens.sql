-- Accounts and their refresh tokens. Runs with search_path = auth.

-- Usernames and e-mail addresses keep the case they were registered with but are unique
-- case-insensitively (the unique indexes on lower()), and are looked up the same way.
CREATE TABLE users (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    username      text NOT NULL CHECK (username ~ '^[A-Za-z0-9._-]{3,32}$'),
    email         text NOT NULL CHECK (char_length(email) BETWEEN 3 AND 254),
    password_hash text NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    role          text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'operator', 'admin')),
    active        boolean NOT NULL DEFAULT true,
    -- Consecutive failed sign-ins; reset by a successful one and when the account locks.
    failed_logins integer NOT NULL DEFAULT 0 CHECK (failed_logins >= 0),
    locked_until  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_login_at timestamptz
);

CREATE UNIQUE INDEX users_username_key ON users (lower(username));
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

-- One row per refresh token ever issued; only its SHA-256 is kept. A sign-in starts a family;
-- each refresh retires the presented token (rotated_at, replaced_by) and adds the next one.
-- Retired rows stay until they expire, so presenting one again is recognised as reuse and
-- revokes the whole family.
CREATE TABLE refresh_tokens (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    family_id   uuid NOT NULL,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash  text NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    rotated_at  timestamptz,
    replaced_by uuid REFERENCES refresh_tokens (id) ON DELETE SET NULL,
    revoked_at  timestamptz,
    CHECK (replaced_by IS NULL OR rotated_at IS NOT NULL)
);

CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id, expires_at);
