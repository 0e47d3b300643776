"""Restores the index with a plain CREATE INDEX: checkout's writes wait for the whole build."""
CHECK = "slow_query.q3"
EXPECT = 'without CONCURRENTLY'  # the verdict must give this reason
REPLACE = {"index_sql": '''index_sql = """
CREATE INDEX IF NOT EXISTS order_items_order_id_idx ON order_items (order_id)
"""'''}
