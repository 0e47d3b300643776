"""Copies a batch into the archive and commits, then deletes it and commits: a crash in between
leaves the batch in both places."""
CHECK = "soft_delete.q3"
EXPECT = "more orders than before"  # the verdict must give this reason
REPLACE = {"archive_orders": '''def archive_orders(conn, cutoff, batch_size=5_000):
    eligible = "created_at < %(cutoff)s AND status IN ('delivered', 'cancelled', 'refunded')"
    archived = 0
    while True:
        ids = [r[0] for r in conn.execute(
            f"SELECT id FROM orders WHERE {eligible} ORDER BY id LIMIT %(n)s",
            {"cutoff": cutoff, "n": batch_size})]
        if not ids:
            conn.commit()
            return archived
        conn.execute("INSERT INTO order_items_archive SELECT * FROM order_items "
                     "WHERE order_id = ANY(%s)", [ids])
        conn.execute("INSERT INTO orders_archive SELECT * FROM orders WHERE id = ANY(%s)", [ids])
        conn.commit()
        conn.execute("DELETE FROM order_items WHERE order_id = ANY(%s)", [ids])
        archived += conn.execute("DELETE FROM orders WHERE id = ANY(%s)", [ids]).rowcount
        conn.commit()
'''}
