"""Runs the DDL with no lock_timeout: it queues behind a long reader, and the application behind it."""
CHECK = "migrations.q1"
EXPECT = 'lock-queue outage'  # the verdict must give this reason
REPLACE = {"run_ddl": '''import random

import psycopg


def run_ddl(conn, statement):
    conn.execute(statement)
'''}
