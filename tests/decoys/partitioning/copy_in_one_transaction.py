"""Copies the whole table with one INSERT … SELECT in the swap's transaction: correct rows, but
one transaction as long as the copy (VACUUM held back, one burst of WAL, all lost on a crash)
and, at the end, writers locked out for the whole copy."""
CHECK = "partitioning.q2"
EXPECT = ("batch", "blocked")
REPLACE = {"convert_orders": '''def convert_orders(conn, first_month, last_month, batch_size=5_000):
    with conn.transaction():
        conn.execute("""CREATE TABLE orders_new (
                            LIKE orders INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING IDENTITY,
                            PRIMARY KEY (id, created_at)
                        ) PARTITION BY RANGE (created_at)""")
    create_month_partitions(conn, "orders_new", first_month, last_month)
    with conn.transaction():
        conn.execute("LOCK TABLE orders IN EXCLUSIVE MODE")
        conn.execute("INSERT INTO orders_new SELECT * FROM orders")
        conn.execute("ALTER TABLE order_items DROP CONSTRAINT IF EXISTS order_items_order_id_fkey")
        conn.execute("ALTER TABLE orders RENAME TO orders_old")
        conn.execute("ALTER TABLE orders_new RENAME TO orders")
        conn.execute("SELECT setval(pg_get_serial_sequence('orders', 'id'), "
                     "(SELECT max(id) FROM orders))")
'''}
