"""Restores the lookup with a BRIN index on order_items (order_id), built concurrently ("tiny and
cheap to maintain"): valid, order_id first, but each order's items cost a whole block range
(128 pages) read and rechecked; at tiny scale the planner prefers the Seq Scan, at larger ones
it uses BRIN and a page reads thousands of pages."""
CHECK = "slow_query.q3"
EXPECT = "is a BRIN index"
REPLACE = {"index_sql": '''index_sql = """
DROP INDEX CONCURRENTLY IF EXISTS order_items_order_id_idx;
CREATE INDEX CONCURRENTLY order_items_order_id_brin ON order_items USING brin (order_id)
"""'''}
