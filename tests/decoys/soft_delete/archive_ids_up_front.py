"""Collects every eligible id first, then moves them in batches by id alone: an order reopened
(a dispute, a return) after that first SELECT is archived anyway, with its new status."""
CHECK = "soft_delete.q3"
EXPECT = "archived it anyway"  # the verdict must give this reason
REPLACE = {"archive_orders": '''def archive_orders(conn, cutoff, batch_size=5_000):
    ids = [r[0] for r in conn.execute(
        "SELECT id FROM orders WHERE created_at < %s "
        "AND status IN ('delivered', 'cancelled', 'refunded') ORDER BY id", [cutoff])]
    conn.commit()
    archived = 0
    for start in range(0, len(ids), batch_size):
        batch = ids[start:start + batch_size]
        with conn.transaction():
            conn.execute("""WITH moved AS (DELETE FROM order_items WHERE order_id = ANY(%s)
                            RETURNING *) INSERT INTO order_items_archive SELECT * FROM moved""",
                         [batch])
            archived += conn.execute("""WITH moved AS (DELETE FROM orders WHERE id = ANY(%s)
                            RETURNING *) INSERT INTO orders_archive SELECT * FROM moved""",
                                     [batch]).rowcount
    return archived
'''}
