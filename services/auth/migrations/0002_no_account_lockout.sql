-- Sign-in failures are no longer counted per account (anyone could lock anyone out): they are
-- throttled per (username, client address) in Redis, under sutazai:auth:.
ALTER TABLE users DROP COLUMN failed_logins, DROP COLUMN locked_until;
