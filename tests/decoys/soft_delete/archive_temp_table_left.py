"""Keeps the batch's ids in a temporary table it never drops: left behind in the caller's session."""
CHECK = "soft_delete.q3"
EXPECT = "temporary table"
REPLACE = {"archive_orders": '''def archive_orders(conn, cutoff, batch_size=5_000):
    eligible = "created_at < %(cutoff)s AND status IN ('delivered', 'cancelled', 'refunded')"
    last_id, archived = 0, 0
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS archive_batch (id bigint PRIMARY KEY)")
    conn.commit()
    while True:
        with conn.transaction():
            conn.execute("TRUNCATE archive_batch")
            conn.execute(f"""INSERT INTO archive_batch
                SELECT id FROM orders WHERE id > %(last)s AND {eligible}
                ORDER BY id LIMIT %(n)s FOR UPDATE""",
                {"last": last_id, "cutoff": cutoff, "n": batch_size})
            ids = [r[0] for r in conn.execute("SELECT id FROM archive_batch ORDER BY id")]
            if not ids:
                return archived
            conn.execute("""WITH moved AS (
                                DELETE FROM order_items WHERE order_id IN (SELECT id FROM archive_batch)
                                RETURNING *)
                            INSERT INTO order_items_archive SELECT * FROM moved""")
            archived += conn.execute("""WITH moved AS (
                                DELETE FROM orders WHERE id IN (SELECT id FROM archive_batch)
                                RETURNING *)
                            INSERT INTO orders_archive SELECT * FROM moved""").rowcount
        last_id = ids[-1]
'''}
