"""A full index on status, a six-valued column: every delivered order is indexed for nothing."""
CHECK = "indexing.q4"
EXPECT = 'partial index'  # the verdict must give this reason
REPLACE = {"partial_sql": '''partial_sql = """
CREATE INDEX IF NOT EXISTS orders_status_idx ON orders (status)
"""'''}
