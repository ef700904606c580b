-- Push, not polling: every new event wakes the auth service's watchers (WatchAuditEvents).
-- The payload is only the event id, and only a hint: any role that may connect can NOTIFY on
-- this channel, so the auth service always re-reads the table and never trusts the payload.
-- The function runs with the inserting role's rights (not SECURITY DEFINER); pg_notify is
-- PUBLIC. A fixed search_path keeps a writer's own path from changing what it calls.
CREATE FUNCTION notify_event() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog
AS $$
BEGIN
    PERFORM pg_notify('sutazai_audit', NEW.event_id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER events_notify AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION notify_event();
