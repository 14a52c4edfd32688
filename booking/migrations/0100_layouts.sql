-- Venue layouts (one row per layout version) and the events created from them.
-- Layout content lives in `document` (JSONB) without its status and hash, which have columns.

CREATE TABLE layouts (
    layout_id  uuid        NOT NULL,
    version    integer     NOT NULL CHECK (version >= 1),
    status     text        NOT NULL CHECK (status IN ('draft', 'published', 'deployed', 'archived')),
    hash       text        CHECK (hash ~ '^[0-9a-f]{64}$'),
    document   jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (layout_id, version),
    -- A hash names exactly what was published: drafts have none, every other status has one.
    CHECK ((status = 'draft') = (hash IS NULL))
);

CREATE UNIQUE INDEX layouts_hash ON layouts (hash) WHERE hash IS NOT NULL;

-- Defence in depth: whatever the application does, a published layout's content never changes
-- and its status only moves forward.
CREATE FUNCTION layouts_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status <> 'draft' AND (NEW.document IS DISTINCT FROM OLD.document
                                  OR NEW.hash IS DISTINCT FROM OLD.hash) THEN
        RAISE EXCEPTION 'layout % version % is %: its content cannot change',
            OLD.layout_id, OLD.version, OLD.status USING ERRCODE = 'check_violation';
    END IF;
    IF OLD.status <> 'draft' AND NEW.status = 'draft' THEN
        RAISE EXCEPTION 'layout % version % cannot return to draft', OLD.layout_id, OLD.version
            USING ERRCODE = 'check_violation';
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

CREATE TRIGGER layouts_guard BEFORE UPDATE ON layouts FOR EACH ROW EXECUTE FUNCTION layouts_guard();

-- Layouts may live in MongoDB instead, so events name their layout without a foreign key.
CREATE TABLE event_layouts (
    event_id       text        PRIMARY KEY,
    layout_id      uuid        NOT NULL,
    layout_version integer     NOT NULL,
    layout_hash    text        NOT NULL CHECK (layout_hash ~ '^[0-9a-f]{64}$'),
    currency       char(3)     NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX event_layouts_layout ON event_layouts (layout_id, layout_version);

-- Prices in the currency's minor unit (pence, cents), one per category of the layout.
CREATE TABLE event_prices (
    event_id    text   NOT NULL REFERENCES event_layouts (event_id) ON DELETE CASCADE,
    category    text   NOT NULL,
    price_minor bigint NOT NULL CHECK (price_minor >= 0),
    PRIMARY KEY (event_id, category)
);
