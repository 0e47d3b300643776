"""Retries the COPY up to three times on an OperationalError (a statement_timeout, a
lock_timeout, a deadlock: "transient, just retry"), rolling back in between. The retry
iterates the same, partly consumed iterator: it loads only the rows after the failure and
returns success, so the head of the stream is silently lost."""
CHECK = "large_datasets.q1"
EXPECT = "rows are missing"
REPLACE = {"load_events": '''def load_events(conn, rows):
    columns = ", ".join(loading.EVENT_COLUMNS)
    for attempt in range(3):
        try:
            with conn.cursor() as cur, cur.copy(f"COPY events ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write(copy_line(row))
            conn.commit()
            return
        except psycopg.OperationalError:  # timeouts, deadlocks, lock waits: transient
            conn.rollback()
            if attempt == 2:
                raise
            time.sleep(0.5 * 2 ** attempt)
'''}
