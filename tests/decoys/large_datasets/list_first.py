"""Builds the whole stream in memory (list(rows)) before a COPY: right rows, fast, but
its memory grows with the number of rows, gigabytes at production scale."""
CHECK = "large_datasets.q3"
EXPECT = 'memory grows with the stream'  # the verdict must give this reason
REPLACE = {"load_events": '''def load_events(conn, rows):
    everything = list(rows)
    with conn.cursor() as cur, cur.copy(
            "COPY events (id, customer_id, kind, occurred_at, amount, detail) FROM STDIN") as copy:
        for row in everything:
            copy.write(copy_line(row))
'''}
