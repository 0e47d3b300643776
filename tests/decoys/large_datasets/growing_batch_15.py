"""Adaptive batch size: starts at 1,000 rows and grows by half after every batch, with no cap (bigger
batches were faster). Memory grows with the stream: at 10 million rows a batch holds millions
of rows. Low points right after a flush look flat when both windows contain a flush."""
CHECK = "large_datasets.q3"
EXPECT = "batches grow with the stream"
REPLACE = {"load_events": '''def load_events(conn, rows):
    columns = ", ".join(loading.EVENT_COLUMNS)
    size = 1_000
    batch = []
    with conn.cursor() as cur:
        for row in rows:
            batch.append(row)
            if len(batch) >= size:
                with cur.copy(f"COPY events ({columns}) FROM STDIN") as copy:
                    for item in batch:
                        copy.write(copy_line(item))
                batch = []
                size = size * 3 // 2  # bigger batches load faster
        if batch:
            with cur.copy(f"COPY events ({columns}) FROM STDIN") as copy:
                for item in batch:
                    copy.write(copy_line(item))
'''}
