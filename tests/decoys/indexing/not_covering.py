"""(customer_id, created_at) without INCLUDE: status and total come from the table."""
CHECK = "indexing.q3"
EXPECT = 'not an Index Only Scan'  # the verdict must give this reason
REPLACE = {"covering_sql": '''covering_sql = """
CREATE INDEX IF NOT EXISTS orders_customer_created_idx ON orders (customer_id, created_at);
VACUUM orders
"""'''}
