"""Locks the batch FOR UPDATE, then copies (INSERT … SELECT) and deletes in separate statements of
one transaction. In READ COMMITTED each statement has its own snapshot: an item updated (a partial
refund changes quantity; FOR UPDATE on the order does not block a non-key item update) between
the copy and the DELETE is deleted in its new version while the archive keeps the old one."""
CHECK = "soft_delete.q3"
EXPECT = "the update was lost"
REPLACE = {"archive_orders": '''def archive_orders(conn, cutoff, batch_size=5_000):
    eligible = "created_at < %(cutoff)s AND status IN ('delivered', 'cancelled', 'refunded')"
    last_id, archived = 0, 0
    while True:
        with conn.transaction():
            ids = [r[0] for r in conn.execute(
                f"SELECT id FROM orders WHERE id > %(last)s AND {eligible} "
                "ORDER BY id LIMIT %(n)s FOR UPDATE",
                {"last": last_id, "cutoff": cutoff, "n": batch_size})]
            if not ids:
                return archived
            conn.execute("INSERT INTO order_items_archive SELECT *, now() FROM order_items "
                         "WHERE order_id = ANY(%s)", [ids])
            conn.execute("DELETE FROM order_items WHERE order_id = ANY(%s)", [ids])
            conn.execute("INSERT INTO orders_archive SELECT *, now() FROM orders "
                         "WHERE id = ANY(%s)", [ids])
            archived += conn.execute("DELETE FROM orders WHERE id = ANY(%s)", [ids]).rowcount
        last_id = ids[-1]
'''}
