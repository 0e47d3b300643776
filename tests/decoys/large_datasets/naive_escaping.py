"""Hand-made COPY text that writes NULL as \\N and turns tabs and newlines into spaces, but
never escapes a backslash: 'C:\\new' would gain a newline and the text '\\N' become NULL,
and a value ending in a backslash (which then escapes the tab after it) or holding '\\x00'
(a NUL byte to COPY) makes PostgreSQL reject the load."""
CHECK = "large_datasets.q1"
# Which fault shows first depends on the seeded stream: PostgreSQL refusing the text, or a
# backslash that eats a tab and splits one row into others. Both are this decoy's fault.
EXPECT = ("rejected the data your loader sent", "splits one row into others")
REPLACE = {"load_events": '''def load_events(conn, rows):
    with conn.cursor() as cur, cur.copy("COPY events FROM STDIN") as copy:
        for row in rows:
            fields = ["\\\\N" if v is None else str(v).replace("\\t", " ").replace("\\n", " ")
                      .replace("\\r", " ") for v in row]
            copy.write("\\t".join(fields) + "\\n")
'''}
