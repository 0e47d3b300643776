"""Moves the orders first and their items second: the foreign key from order_items refuses."""
CHECK = "soft_delete.q3"
EXPECT = "children first"  # the verdict must give this reason
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
            archived += conn.execute("""WITH moved AS (DELETE FROM orders WHERE id = ANY(%s)
                                        RETURNING *) INSERT INTO orders_archive
                                        SELECT * FROM moved""", [ids]).rowcount
            conn.execute("""WITH moved AS (DELETE FROM order_items WHERE order_id = ANY(%s)
                            RETURNING *) INSERT INTO order_items_archive SELECT * FROM moved""",
                         [ids])
        last_id = ids[-1]
'''}
