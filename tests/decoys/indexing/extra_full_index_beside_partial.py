"""The partial queue index, plus a full (status, created_at) index 'for the other statuses':
every delivered order (90% of the table) is indexed for a query nobody runs."""
CHECK = "indexing.q4"
EXPECT = "indexes all"
REPLACE = {"partial_sql": '''partial_sql = """
CREATE INDEX IF NOT EXISTS orders_status_created_idx ON orders (status, created_at);
CREATE INDEX IF NOT EXISTS orders_pending_created_idx ON orders (created_at)
    WHERE status = 'pending'
"""'''}
