"""Retries correctly but leaves its 200 ms lock_timeout on the connection for whoever comes next."""
CHECK = "migrations.q1"
EXPECT = 'left lock_timeout'  # the verdict must give this reason
REPLACE = {"run_ddl": '''import random

import psycopg


def run_ddl(conn, statement, lock_timeout="200ms", attempts=30):
    conn.execute(f"SET lock_timeout = '{lock_timeout}'")
    conn.execute("SET statement_timeout = '30min'")
    for attempt in range(1, attempts + 1):
        try:
            conn.execute(statement)
            return attempt
        except psycopg.errors.LockNotAvailable:
            if attempt == attempts:
                raise
            time.sleep(random.uniform(0, min(2.0, 0.05 * 2 ** attempt)))
'''}
