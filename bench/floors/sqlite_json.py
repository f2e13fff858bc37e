#!/usr/bin/env python3
"""Floor (a+): what any JSON-over-SQLite Python CGI pays, however it is written.

Imports json and sqlite3, opens the database named by TASKQ_BENCH_SQLITE (WAL
mode, synchronous=NORMAL, as the SQLite store uses it), runs one write
transaction, closes, and prints a header and `{}` made by json.dumps.
"""
import json
import os
import sqlite3
import sys

conn = sqlite3.connect(os.environ["TASKQ_BENCH_SQLITE"], isolation_level=None, timeout=10)
conn.execute("PRAGMA journal_mode = WAL")
conn.execute("PRAGMA synchronous = NORMAL")
conn.execute("BEGIN IMMEDIATE")
conn.execute("CREATE TABLE IF NOT EXISTS floor (n INTEGER)")
conn.execute("INSERT INTO floor (n) VALUES (1)")
conn.execute("COMMIT")
conn.close()
sys.stdout.write("Status: 200 OK\r\nContent-Type: application/json\r\n\r\n" + json.dumps({}) + "\n")
