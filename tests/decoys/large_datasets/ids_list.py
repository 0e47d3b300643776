"""Streams through COPY but keeps every loaded id in a list (for a log line): memory grows
by about 40 bytes per row, 400 MB at 10 million rows, far less than a list of the rows, so
a limit relative to that list lets it through."""
CHECK = "large_datasets.q3"
EXPECT = "bytes for every row it had taken"  # the verdict must give this reason
REPLACE = {"load_events": '''def load_events(conn, rows):
    columns = ", ".join(loading.EVENT_COLUMNS)
    loaded = []
    with conn.cursor() as cur, cur.copy(f"COPY events ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write(copy_line(row))
            loaded.append(row[0])
    print(f"loaded {len(loaded)} events, ids {min(loaded)}..{max(loaded)}")
'''}
