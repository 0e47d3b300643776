"""Stages the stream into a temporary table, then takes LOCK TABLE events IN EXCLUSIVE MODE for
the final INSERT ... SELECT "so the swap is atomic": every writer of events (and at scale the
INSERT of millions of rows takes minutes) waits. The lock is taken after the stream is read."""
CHECK = "large_datasets.q1"
EXPECT = "asked for ExclusiveLock on events"
REPLACE = {"load_events": '''def load_events(conn, rows):
    columns = ", ".join(loading.EVENT_COLUMNS)
    with conn.transaction():
        conn.execute("CREATE TEMP TABLE events_stage (LIKE events) ON COMMIT DROP")
        with conn.cursor() as cur, cur.copy(f"COPY events_stage ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write(copy_line(row))
        conn.execute("LOCK TABLE events IN EXCLUSIVE MODE")
        conn.execute(f"INSERT INTO events ({columns}) SELECT {columns} FROM events_stage")
'''}
