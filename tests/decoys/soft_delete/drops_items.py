"""Archives the orders but deletes their items instead of archiving them: order lines are lost."""
CHECK = "soft_delete.q3"
EXPECT = "in neither the live table nor the archive"  # the verdict must give this reason
REPLACE = {"archive_orders": '''def archive_orders(conn, cutoff, batch_size=5_000):
    eligible = "created_at < %(cutoff)s AND status IN ('delivered', 'cancelled', 'refunded')"
    archived = 0
    while True:
        with conn.transaction():
            ids = [r[0] for r in conn.execute(
                f"SELECT id FROM orders WHERE {eligible} ORDER BY id LIMIT %(n)s",
                {"cutoff": cutoff, "n": batch_size})]
            if not ids:
                return archived
            conn.execute("DELETE FROM order_items WHERE order_id = ANY(%s)", [ids])
            archived += conn.execute("""WITH moved AS (DELETE FROM orders WHERE id = ANY(%s)
                                        RETURNING *) INSERT INTO orders_archive
                                        SELECT * FROM moved""", [ids]).rowcount
'''}
