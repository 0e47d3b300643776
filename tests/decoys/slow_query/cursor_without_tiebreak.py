"""Keyset on created_at alone: orders sharing a timestamp at the page boundary are skipped."""
CHECK = "slow_query.q4"
EXPECT = 'share one created_at'  # the verdict must give this reason
REPLACE = {"skew_index_sql": '''skew_index_sql = """
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_customer_created_idx ON orders (customer_id, created_at DESC)
"""
page_sql = """
SELECT p.id, p.status, p.created_at, c.full_name, c.email,
       count(oi.id) AS item_count, sum(oi.unit_price * oi.quantity) AS total
FROM (SELECT id, status, created_at, customer_id FROM orders
      WHERE customer_id = %(customer)s AND created_at < %(before_created_at)s
      ORDER BY created_at DESC LIMIT 20) p
JOIN customers c ON c.id = p.customer_id
JOIN order_items oi ON oi.order_id = p.id
GROUP BY p.id, p.status, p.created_at, c.id
ORDER BY p.created_at DESC, p.id DESC
"""'''}
