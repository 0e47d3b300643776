"""Chooses 20 orders, then LEFT JOINs order_items with count(*): an order without items shows with item_count 1 and total NULL, where the history page leaves it out."""
CHECK = "slow_query.q4"
EXPECT = "order without items"  # the verdict must give this reason
REPLACE = {"skew_index_sql": '''skew_index_sql = """
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_customer_created_id_idx
    ON orders (customer_id, created_at DESC, id DESC)
"""
page_sql = """
SELECT p.id, p.status, p.created_at, c.full_name, c.email,
       count(*) AS item_count, sum(oi.unit_price * oi.quantity) AS total
FROM (
    SELECT id, status, created_at, customer_id
    FROM orders
    WHERE customer_id = %(customer)s
      AND (created_at, id) < (%(before_created_at)s, %(before_id)s)
    ORDER BY created_at DESC, id DESC
    LIMIT 20
) p
JOIN customers c ON c.id = p.customer_id
LEFT JOIN order_items oi ON oi.order_id = p.id
GROUP BY p.id, p.status, p.created_at, c.id
ORDER BY p.created_at DESC, p.id DESC
"""'''}
