"""Every row of every taskq table, straight from the database, to prove that a
refused request changed nothing. One connection per reader: opening a MariaDB
connection per query cost 0.1 s, which a fuzz run of hundreds of requests
cannot afford."""

TABLES = ("task_types", "tasks", "task_history")


class DbState:
    def __init__(self, config):
        self.config = config
        if config.backend == "sqlite":
            import sqlite3

            self.conn = sqlite3.connect(config.database["sqlite_path"], isolation_level=None)
        else:
            from conftest import mysql_connect

            self.conn = mysql_connect(config.database["name"])

    def __call__(self):
        """{table: [row tuples ordered by id]}."""
        out = {}
        for table in TABLES:
            sql = "SELECT * FROM %s ORDER BY id" % table
            if self.config.backend == "sqlite":
                out[table] = self.conn.execute(sql).fetchall()
            else:
                with self.conn.cursor() as cur:
                    cur.execute(sql)
                    out[table] = list(cur.fetchall())
        return out

    def close(self):
        self.conn.close()
