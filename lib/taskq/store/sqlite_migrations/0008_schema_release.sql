-- release: 0.5.0
-- Version 8: each schema version records the first taskq release that knows
-- it (the store writes it from a migration's "release:" line), so an older
-- release opening this file refuses it and names the release to upload again.
CREATE TABLE IF NOT EXISTS taskq_schema_version (
    version       INTEGER PRIMARY KEY,
    needs_release TEXT,
    applied_at    INTEGER NOT NULL
);
