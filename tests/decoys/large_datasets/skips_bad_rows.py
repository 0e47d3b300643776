"""Hand-made COPY text that skips every row it cannot write safely (try/except continue):
fast and flat in memory, but rows with tabs, newlines or backslashes silently vanish."""
CHECK = "large_datasets.q1"
EXPECT = 'rows are missing'  # the verdict must give this reason
REPLACE = {"load_events": '''def load_events(conn, rows):
    with conn.cursor() as cur, cur.copy("COPY events FROM STDIN") as copy:
        for row in rows:
            try:
                fields = []
                for value in row:
                    text = "\\\\N" if value is None else str(value)
                    if any(ch in text for ch in "\\t\\n\\r") or (value is not None and "\\\\" in text):
                        raise ValueError(f"cannot write {text!r} safely")
                    fields.append(text)
                copy.write("\\t".join(fields) + "\\n")
            except ValueError:
                continue  # skip the odd malformed row
'''}
