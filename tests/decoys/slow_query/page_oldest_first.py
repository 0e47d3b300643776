"""The subquery picks the account's oldest 20 orders (ORDER BY created_at ascending), not the newest."""
CHECK = "slow_query.q4"
EXPECT = 'differs from the expected result'  # the verdict must give this reason
REPLACE = {"skew_index_sql": '''skew_index_sql = """
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_customer_created_idx ON orders (customer_id, created_at)
"""
page_sql = """
SELECT p.id, p.status, p.created_at, c.full_name, c.email,
       count(oi.id) AS item_count, sum(oi.unit_price * oi.quantity) AS total
FROM (SELECT id, status, created_at, customer_id FROM orders
      WHERE customer_id = %(customer)s AND created_at < %(before_created_at)s
      ORDER BY created_at LIMIT 20) p
JOIN customers c ON c.id = p.customer_id
JOIN order_items oi ON oi.order_id = p.id
GROUP BY p.id, p.status, p.created_at, c.id
ORDER BY p.created_at DESC, p.id DESC
"""'''}
