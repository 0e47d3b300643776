"""Re-checks eligibility in both moving statements (correct), but returns how many ids the batch's
SELECT chose, not how many orders its DELETE moved: an order reopened in between stays live and
is still counted as archived."""
CHECK = "soft_delete.q3"
EXPECT = "not how many ids were selected"  # the verdict must give this reason
REPLACE = {"archive_orders": '''def archive_orders(conn, cutoff, batch_size=5_000):
    eligible = "created_at < %(cutoff)s AND status IN ('delivered', 'cancelled', 'refunded')"
    last_id, archived = 0, 0
    while True:
        with conn.transaction():
            ids = [r[0] for r in conn.execute(
                f"SELECT id FROM orders WHERE id > %(last)s AND {eligible} "
                "ORDER BY id LIMIT %(n)s", {"last": last_id, "cutoff": cutoff, "n": batch_size})]
            if not ids:
                return archived
            p = {"ids": ids, "cutoff": cutoff}
            conn.execute(f"""WITH moved AS (
                                DELETE FROM order_items WHERE order_id IN (
                                    SELECT id FROM orders WHERE id = ANY(%(ids)s) AND {eligible}
                                    FOR UPDATE)
                                RETURNING *)
                             INSERT INTO order_items_archive SELECT * FROM moved""", p)
            conn.execute(f"""WITH moved AS (
                                DELETE FROM orders WHERE id = ANY(%(ids)s) AND {eligible}
                                RETURNING *)
                             INSERT INTO orders_archive SELECT * FROM moved""", p)
            archived += len(ids)
        last_id = ids[-1]
'''}
