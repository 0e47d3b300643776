"""CLUSTER orders on the covering index, then VACUUM: an ACCESS EXCLUSIVE rewrite of orders for
what an index and a plain VACUUM do online."""
CHECK = "indexing.q3"
EXPECT = "ACCESS EXCLUSIVE lock on orders"  # the verdict must give this reason
REPLACE = {"covering_sql": '''covering_sql = """
CREATE INDEX IF NOT EXISTS orders_history_cover ON orders (customer_id, created_at)
    INCLUDE (status, total);
CLUSTER orders USING orders_history_cover;
VACUUM (ANALYZE) orders
"""'''}
