"""Archives every order before the cutoff, including ones still open (pending, paid, shipped)."""
CHECK = "soft_delete.q3"
EXPECT = "open or newer orders were archived"  # the verdict must give this reason
REPLACE = {"archive_orders": '''def archive_orders(conn, cutoff, batch_size=5_000):
    last_id, archived = 0, 0
    while True:
        with conn.transaction():
            ids = [r[0] for r in conn.execute(
                "SELECT id FROM orders WHERE id > %s AND created_at < %s ORDER BY id LIMIT %s",
                [last_id, cutoff, batch_size])]
            if not ids:
                return archived
            conn.execute("""WITH moved AS (DELETE FROM order_items WHERE order_id = ANY(%s)
                            RETURNING *) INSERT INTO order_items_archive SELECT * FROM moved""",
                         [ids])
            archived += conn.execute("""WITH moved AS (DELETE FROM orders WHERE id = ANY(%s)
                                        RETURNING *) INSERT INTO orders_archive
                                        SELECT * FROM moved""", [ids]).rowcount
        last_id = ids[-1]
'''}
