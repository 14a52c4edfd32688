-- What best available and general admission need to recreate an event exactly (`rebuild`):
-- each seat's explicit rank and accessibility, and the event's general-admission areas.
ALTER TABLE event_seats
    ADD COLUMN rank       integer,  -- NULL: the seat's position ranks it
    ADD COLUMN wheelchair boolean NOT NULL DEFAULT false,
    ADD COLUMN companion  boolean NOT NULL DEFAULT false;

CREATE TABLE event_areas (
    event_id  text NOT NULL REFERENCES events,
    area_id   text NOT NULL,
    position  integer NOT NULL,  -- the area's index in the CreateEvent request
    capacity  integer NOT NULL CHECK (capacity > 0),
    category  text,
    PRIMARY KEY (event_id, area_id)
);
