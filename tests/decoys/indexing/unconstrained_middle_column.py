"""(shipping_country, customer_id, created_at): both columns in the Index Cond, but created_at
cannot narrow the scan past the unconstrained customer_id, so every entry of the country is read."""
CHECK = "indexing.q1"
EXPECT = 'buffers'  # the verdict must give this reason
REPLACE = {"composite_sql": '''composite_sql = """
CREATE INDEX IF NOT EXISTS orders_country_customer_created_idx
    ON orders (shipping_country, customer_id, created_at)
"""'''}
