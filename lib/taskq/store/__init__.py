"""Storage backends. `open_store(config)` picks one and connects once."""


def open_store(config, check_schema=True):
    """One connection per request: the caller closes the store when done.

    A database at another schema version than this release's is refused
    (errors.SchemaPending / SchemaNewer); only the installer, which reads an
    old database before upgrading it, opens one with check_schema=False."""
    if config.backend == "mysql":
        from .mysql import MySQLStore

        return MySQLStore(config, check_schema)
    from .sqlite import SQLiteStore

    return SQLiteStore(config)
