"""Chooses the batch twice, with the same subquery in each statement (items: locked FOR UPDATE;
orders: chosen again). An old straggler closed by another session between the two statements
(shipped -> delivered) joins the second choice and pushes the batch's last order out of the
LIMIT: that order's items are archived while it stays live, and the straggler's DELETE trips
over its live items (23503) or, without items, is archived alone."""
CHECK = "soft_delete.q3"
EXPECT = "chose the batch more than once"  # the verdict must give this reason
REPLACE = {"archive_orders": '''def archive_orders(conn, cutoff, batch_size=5_000):
    pick = ("SELECT id FROM orders WHERE id > %(last)s AND created_at < %(cutoff)s "
            "AND status IN ('delivered', 'cancelled', 'refunded') ORDER BY id LIMIT %(n)s")
    last_id, archived = 0, 0
    while True:
        p = {"last": last_id, "cutoff": cutoff, "n": batch_size}
        with conn.transaction():
            conn.execute(f"""WITH moved AS (
                                 DELETE FROM order_items WHERE order_id IN ({pick} FOR UPDATE)
                                 RETURNING *)
                             INSERT INTO order_items_archive SELECT * FROM moved""", p)
            ids = [r[0] for r in conn.execute(f"""WITH moved AS (
                                 DELETE FROM orders WHERE id IN ({pick}) RETURNING *)
                             INSERT INTO orders_archive SELECT * FROM moved RETURNING id""", p)]
        if not ids:
            return archived
        archived += len(ids)
        last_id = max(ids)
'''}
