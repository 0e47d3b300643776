"""Doubles lock_timeout at each attempt with no cap: by attempt 10 it waits 100 s, an outage."""
CHECK = "migrations.q1"
EXPECT = "each attempt may stall the application"  # the verdict must give this reason
REPLACE = {"run_ddl": '''import random

import psycopg


def run_ddl(conn, statement, lock_timeout_ms=200, attempts=30):
    saved = conn.execute("SELECT current_setting('lock_timeout'), "
                         "current_setting('statement_timeout')").fetchone()
    conn.execute("SET statement_timeout = '30min'")
    try:
        for attempt in range(1, attempts + 1):
            # be a bit more patient each time
            conn.execute(f"SET lock_timeout = '{lock_timeout_ms * 2 ** (attempt - 1)}ms'")
            try:
                conn.execute(statement)
                return attempt
            except psycopg.errors.LockNotAvailable:
                if attempt == attempts:
                    raise
                time.sleep(random.uniform(0, min(2.0, 0.05 * 2 ** attempt)))
    finally:
        conn.execute("SELECT set_config('lock_timeout', %s, false), "
                     "set_config('statement_timeout', %s, false)", saved)
'''}
