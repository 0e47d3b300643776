"""Each batch commits its items, then its orders, in two transactions: after a crash between the
two (and in the moment between them), live orders have their lines in the archive. (Moving all
items first, then all orders, fails the same way.)"""
CHECK = "soft_delete.q3"
EXPECT = "belong to orders still in the live table"  # the verdict must give this reason
REPLACE = {"archive_orders": '''def archive_orders(conn, cutoff, batch_size=5_000):
    eligible = "created_at < %(cutoff)s AND status IN ('delivered', 'cancelled', 'refunded')"
    last_id, archived = 0, 0
    while True:
        ids = [r[0] for r in conn.execute(
            f"SELECT id FROM orders WHERE id > %(last)s AND {eligible} "
            "ORDER BY id LIMIT %(n)s FOR UPDATE",
            {"last": last_id, "cutoff": cutoff, "n": batch_size})]
        if not ids:
            conn.commit()
            return archived
        conn.execute("""WITH moved AS (DELETE FROM order_items WHERE order_id = ANY(%(ids)s)
                        RETURNING *) INSERT INTO order_items_archive SELECT * FROM moved""",
                     {"ids": ids})
        conn.commit()
        archived += conn.execute(f"""WITH moved AS (DELETE FROM orders WHERE id = ANY(%(ids)s)
                        AND {eligible} RETURNING *) INSERT INTO orders_archive
                        SELECT * FROM moved""", {"ids": ids, "cutoff": cutoff}).rowcount
        conn.commit()
        last_id = ids[-1]
'''}
