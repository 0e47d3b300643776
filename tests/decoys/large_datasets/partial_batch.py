"""Collects rows in batches of 1,000 and COPYs each full batch, but never writes the last,
partial one after the loop: on any stream whose length is not a multiple of 1,000 the tail
is lost. Every stream length the check used to pick was a round number, so it passed."""
CHECK = "large_datasets.q1"
EXPECT = 'last, partial batch'  # the verdict must give this reason
REPLACE = {"load_events": '''def load_events(conn, rows):
    columns = ", ".join(loading.EVENT_COLUMNS)
    batch = []
    with conn.cursor() as cur:
        for row in rows:
            batch.append(row)
            if len(batch) == 1_000:
                with cur.copy(f"COPY events ({columns}) FROM STDIN") as copy:
                    for item in batch:
                        copy.write(copy_line(item))
                batch = []
'''}
