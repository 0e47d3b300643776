"""Commits every 5,000 rows (short transactions, as the notes advise for live tables) and, when
the load fails, DELETEs the id range it already committed, then re-raises. Readers see half a
load meanwhile; a crash, kill or lost connection between batches leaves the committed batches
for the rerun to load twice; the DELETE removes any other row in that id range."""
CHECK = "large_datasets.q1"
EXPECT = "another session already saw"
REPLACE = {"load_events": '''def load_events(conn, rows):
    columns = ", ".join(loading.EVENT_COLUMNS)
    first = last = None
    count = 0
    try:
        copy_cm = None
        with conn.cursor() as cur:
            batch = []
            for row in rows:
                batch.append(row)
                if len(batch) == 5_000:
                    with cur.copy(f"COPY events ({columns}) FROM STDIN") as copy:
                        for item in batch:
                            copy.write(copy_line(item))
                    conn.commit()
                    first = batch[0][0] if first is None else min(first, batch[0][0])
                    last = batch[-1][0] if last is None else max(last, batch[-1][0])
                    batch = []
            if batch:
                with cur.copy(f"COPY events ({columns}) FROM STDIN") as copy:
                    for item in batch:
                        copy.write(copy_line(item))
                conn.commit()
    except BaseException:
        conn.rollback()
        if first is not None:  # undo the batches already committed
            conn.execute("DELETE FROM events WHERE id BETWEEN %s AND %s", (first, last))
            conn.commit()
        raise
'''}
