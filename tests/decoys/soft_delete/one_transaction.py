"""Moves everything in one statement pair and one transaction: no batches, all or nothing."""
CHECK = "soft_delete.q3"
EXPECT = "fewer than four batches"  # the verdict must give this reason
REPLACE = {"archive_orders": '''def archive_orders(conn, cutoff, batch_size=5_000):
    eligible = "created_at < %(cutoff)s AND status IN ('delivered', 'cancelled', 'refunded')"
    conn.execute(f"""WITH moved AS (DELETE FROM order_items WHERE order_id IN
                        (SELECT id FROM orders WHERE {eligible}) RETURNING *)
                     INSERT INTO order_items_archive SELECT * FROM moved""", {"cutoff": cutoff})
    archived = conn.execute(f"""WITH moved AS (DELETE FROM orders WHERE {eligible} RETURNING *)
                                INSERT INTO orders_archive SELECT * FROM moved""",
                            {"cutoff": cutoff}).rowcount
    conn.commit()
    return archived
'''}
