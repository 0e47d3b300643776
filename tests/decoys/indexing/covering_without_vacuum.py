"""The right covering index, but no VACUUM: the Index Only Scan still fetches from the heap."""
CHECK = "indexing.q3"
EXPECT = 'Heap Fetches'  # the verdict must give this reason
REPLACE = {"covering_sql": '''covering_sql = """
CREATE INDEX IF NOT EXISTS orders_history_cover ON orders (customer_id, created_at)
    INCLUDE (status, total)
"""'''}
