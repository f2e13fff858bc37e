"""Storage backends. `open_store(config)` picks one and connects once."""


def open_store(config):
    """One connection per request: the caller closes the store when done."""
    if config.backend == "mysql":
        from .mysql import MySQLStore

        return MySQLStore(config)
    from .sqlite import SQLiteStore

    return SQLiteStore(config)
