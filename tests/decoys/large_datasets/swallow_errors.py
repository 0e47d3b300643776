"""Catches any database error, rolls back and returns quietly: a load that fails partway
loses every row and the caller believes it succeeded."""
CHECK = "large_datasets.q1"
EXPECT = "hid the error"  # the verdict must give this reason
REPLACE = {"load_events": '''def load_events(conn, rows):
    columns = ", ".join(loading.EVENT_COLUMNS)
    try:
        with conn.cursor() as cur, cur.copy(f"COPY events ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write(copy_line(row))
        conn.commit()
    except psycopg.Error as exc:
        conn.rollback()  # a bad batch must not crash the nightly job
        print("load failed, skipping:", exc)
'''}
