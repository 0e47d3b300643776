"""Keyset condition, but joins and sorts all of the account's orders before the LIMIT."""
CHECK = "slow_query.q4"
EXPECT = 'Seq Scan'  # the verdict must give this reason
REPLACE = {"skew_index_sql": '''skew_index_sql = """
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_customer_created_id_idx
    ON orders (customer_id, created_at DESC, id DESC)
"""
page_sql = """
SELECT o.id, o.status, o.created_at, c.full_name, c.email,
       count(oi.id) AS item_count, sum(oi.unit_price * oi.quantity) AS total
FROM orders o JOIN customers c ON o.customer_id = c.id
JOIN order_items oi ON oi.order_id = o.id
WHERE o.customer_id = %(customer)s AND (o.created_at, o.id) < (%(before_created_at)s, %(before_id)s)
GROUP BY o.id, c.id
ORDER BY o.created_at DESC, o.id DESC
LIMIT 20
"""'''}
