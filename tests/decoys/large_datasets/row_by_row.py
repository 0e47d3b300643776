"""One INSERT per row in autocommit: every row is right, but each pays a round trip and a
WAL flush, so the loader runs at a few thousand rows/s, a hundredth of COPY."""
CHECK = "large_datasets.q2"
EXPECT = 'stream the rows through COPY'  # the verdict must give this reason
REPLACE = {"load_events": '''def load_events(conn, rows):
    conn.autocommit = True
    with conn.cursor() as cur:
        for row in rows:
            cur.execute("INSERT INTO events (id, customer_id, kind, occurred_at, amount, detail) "
                        "VALUES (%s, %s, %s, %s, %s, %s)", row)
'''}
