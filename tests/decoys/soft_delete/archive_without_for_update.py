"""The former reference: the batch's SELECT takes no row lock, the items' DELETE trusts the ids,
and only the orders' DELETE re-checks eligibility. An order reopened right after the SELECT stays
live, but its items are already in the archive: the customer's order has no lines."""
CHECK = "soft_delete.q3"
EXPECT = "has no lines"  # the verdict must give this reason
REPLACE = {"archive_orders": '''def archive_orders(conn, cutoff, batch_size=5_000):
    eligible = "created_at < %(cutoff)s AND status IN ('delivered', 'cancelled', 'refunded')"
    last_id, archived = 0, 0
    while True:
        with conn.transaction():  # one batch: items and orders, committed together
            ids = [r[0] for r in conn.execute(
                f"SELECT id FROM orders WHERE id > %(last)s AND {eligible} "
                "ORDER BY id LIMIT %(n)s", {"last": last_id, "cutoff": cutoff, "n": batch_size})]
            if not ids:
                return archived
            conn.execute("""WITH moved AS (
                                DELETE FROM order_items WHERE order_id = ANY(%(ids)s)
                                RETURNING *)
                            INSERT INTO order_items_archive SELECT * FROM moved""", {"ids": ids})
            # the DELETE re-checks eligibility: an order reopened since the SELECT stays
            archived += conn.execute(f"""WITH moved AS (
                                DELETE FROM orders WHERE id = ANY(%(ids)s) AND {eligible}
                                RETURNING *)
                            INSERT INTO orders_archive SELECT * FROM moved""",
                                     {"ids": ids, "cutoff": cutoff}).rowcount
        last_id = ids[-1]
'''}
