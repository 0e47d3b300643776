"""Ignores the stream and copies the check's own expected rows (`INSERT INTO events SELECT *
FROM events_expected`, the table where the check used to keep them): right count, right
checksum, no loader at all. The expected rows must never sit where an answer can read them."""
CHECK = "large_datasets.q1"
EXPECT = 'No row of the stream is in events'  # the verdict must give this reason
REPLACE = {"load_events": '''def load_events(conn, rows):
    for _ in rows:
        pass  # consume the stream, load nothing from it
    with conn.cursor() as cur:
        # any table shaped like events that the check may have filled
        cur.execute("SELECT c.oid::regclass::text FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE c.relkind = 'r' AND c.relname LIKE 'events%%' AND c.relname <> 'events' "
                    "AND n.nspname NOT LIKE 'pg%%'")
        for (table,) in cur.fetchall():
            cur.execute(f"INSERT INTO events SELECT * FROM {table}")
'''}
