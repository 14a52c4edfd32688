-- `lml-worker dead-letters replay` marks what it applied: a letter is kept, as a record, and
-- replayed at most once unless asked again.
ALTER TABLE dead_letters ADD COLUMN replayed_at timestamptz;
