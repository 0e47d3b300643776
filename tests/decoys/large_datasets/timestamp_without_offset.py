"""COPY text whose timestamps are converted to UTC and then written without their offset
('2024-05-01 12:00:00.250000'): PostgreSQL reads such a timestamp in the session's TimeZone,
so every instant shifts by the caller's UTC offset. It passed only while the check's session
was in UTC."""
CHECK = "large_datasets.q1"
EXPECT = "read in the session's TimeZone"  # the verdict must give this reason
REPLACE = {"load_events": '''def load_events(conn, rows):
    from datetime import timezone

    columns = ", ".join(loading.EVENT_COLUMNS)
    with conn.cursor() as cur, cur.copy(f"COPY events ({columns}) FROM STDIN") as copy:
        for row in rows:
            values = list(row)
            values[3] = row[3].astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
            copy.write(copy_line(values))
'''}
