"""Indexes order_items (product_id, order_id): order_id is not its leading column."""
CHECK = "slow_query.q3"
EXPECT = 'first column is order_id'  # the verdict must give this reason
REPLACE = {"index_sql": '''index_sql = """
CREATE INDEX CONCURRENTLY IF NOT EXISTS order_items_product_order_idx ON order_items (product_id, order_id)
"""'''}
