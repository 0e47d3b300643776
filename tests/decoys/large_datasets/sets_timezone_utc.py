""""Fixes" an offset-less COPY text loader by switching the caller's session to UTC with a
plain SET: the instants come out right, but the caller's own TimeZone is gone for every
statement it runs next on that connection."""
CHECK = "large_datasets.q1"
EXPECT = "changed the caller's session settings"  # the verdict must give this reason
REPLACE = {"load_events": '''def load_events(conn, rows):
    from datetime import timezone

    conn.execute("SET TimeZone = 'UTC'")
    columns = ", ".join(loading.EVENT_COLUMNS)
    with conn.cursor() as cur, cur.copy(f"COPY events ({columns}) FROM STDIN") as copy:
        for row in rows:
            values = list(row)
            values[3] = row[3].astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
            copy.write(copy_line(values))
'''}
