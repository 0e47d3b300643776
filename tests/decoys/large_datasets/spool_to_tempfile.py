"""Spools the whole stream as COPY text into a temporary file first, then streams the file
into COPY: flat in Python memory, right rows, fast. But it materialises the entire feed on
local disk before loading a row: 10 million rows is gigabytes of /tmp (a tmpfs in many
containers, so RAM counted against the container limit after all), and the load starts only
once the whole feed has been read."""
CHECK = "large_datasets.q3"
EXPECT = "not one had reached the server"
REPLACE = {"load_events": '''def load_events(conn, rows):
    import tempfile
    columns = ", ".join(loading.EVENT_COLUMNS)
    with tempfile.TemporaryFile("w+", encoding="utf-8") as spool:
        for row in rows:
            spool.write(copy_line(row))
        spool.seek(0)
        with conn.cursor() as cur, cur.copy(f"COPY events ({columns}) FROM STDIN") as copy:
            while block := spool.read(1 << 16):
                copy.write(block)
'''}
