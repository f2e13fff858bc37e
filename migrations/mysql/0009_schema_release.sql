-- release: 0.5.0
-- Migration 0009: each schema version records the oldest taskq release that
-- knows it (taskq.migrate writes it from a migration's "release:" line), so an
-- older release uploaded over this database refuses it and names the release
-- to upload again.
-- No statement may contain a semicolon except as its terminator, and comments
-- stay on their own lines: taskq.migrate splits migrations on ';'.

ALTER TABLE taskq_schema_version
    ADD COLUMN needs_release VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NULL;
