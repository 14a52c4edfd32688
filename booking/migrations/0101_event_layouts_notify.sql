-- Announces every change to an event's layout record (event_layouts, event_prices) on the
-- channel `event_layouts`, so that a process keeping records in memory (the gateway's seat map)
-- forgets a changed one at once instead of reading Postgres on every request. The payload is
-- the event id, or '' for "forget every event" (TRUNCATE, or an id too long for a payload).
-- Postgres sends notifications only when the transaction commits.

CREATE FUNCTION event_layouts_notify_id(event_id text) RETURNS void LANGUAGE sql AS $$
    SELECT pg_notify('event_layouts', CASE WHEN octet_length(event_id) <= 1000 THEN event_id
                                           ELSE '' END);
$$;

CREATE FUNCTION event_layouts_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('event_layouts', '');
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM event_layouts_notify_id(OLD.event_id);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM event_layouts_notify_id(NEW.event_id);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER event_layouts_notify AFTER INSERT OR UPDATE OR DELETE ON event_layouts
    FOR EACH ROW EXECUTE FUNCTION event_layouts_notify();
CREATE TRIGGER event_layouts_notify_truncate AFTER TRUNCATE ON event_layouts
    FOR EACH STATEMENT EXECUTE FUNCTION event_layouts_notify();
CREATE TRIGGER event_prices_notify AFTER INSERT OR UPDATE OR DELETE ON event_prices
    FOR EACH ROW EXECUTE FUNCTION event_layouts_notify();
CREATE TRIGGER event_prices_notify_truncate AFTER TRUNCATE ON event_prices
    FOR EACH STATEMENT EXECUTE FUNCTION event_layouts_notify();
