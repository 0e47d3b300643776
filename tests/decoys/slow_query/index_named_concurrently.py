"""A plain CREATE INDEX whose name says "concurrently": the build still takes a SHARE lock and blocks checkout's writes."""
CHECK = "slow_query.q3"
EXPECT = 'queued for a ShareLock'  # the verdict must give this reason
REPLACE = {"index_sql": '''index_sql = """
CREATE INDEX IF NOT EXISTS order_items_order_id_concurrently_idx ON order_items (order_id)
"""'''}
