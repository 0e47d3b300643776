"""'Idempotent' migration: a plain DROP INDEX IF EXISTS, then CREATE INDEX CONCURRENTLY. The deploy's INVALID index exists, so the plain DROP queues for ACCESS EXCLUSIVE on order_items behind checkout's writes."""
CHECK = "slow_query.q3"
EXPECT = "DROP INDEX CONCURRENTLY IF EXISTS"  # the verdict must give this reason
REPLACE = {"index_sql": '''index_sql = """
DROP INDEX IF EXISTS order_items_order_id_idx;
CREATE INDEX CONCURRENTLY order_items_order_id_idx ON order_items (order_id)
"""'''}
