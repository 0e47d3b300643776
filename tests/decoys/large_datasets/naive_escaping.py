"""Hand-made COPY text that writes NULL as \\N but never escapes: a value that is the text
'\\N' comes back as NULL, and 'C:\\new' gains a newline. The row count is right; the
contents are not."""
CHECK = "large_datasets.q1"
EXPECT = 'invalid byte sequence'  # the verdict must give this reason
REPLACE = {"load_events": '''def load_events(conn, rows):
    with conn.cursor() as cur, cur.copy("COPY events FROM STDIN") as copy:
        for row in rows:
            fields = ["\\\\N" if v is None else str(v).replace("\\t", " ").replace("\\n", " ")
                      .replace("\\r", " ") for v in row]
            copy.write("\\t".join(fields) + "\\n")
'''}
