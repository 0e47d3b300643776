"""Covers the columns but keys on created_at: cheap for the busiest customer, a walk through the
whole index for an ordinary one (Filter: customer_id = ...)."""
CHECK = "indexing.q3"
EXPECT = 'buffers'  # the verdict must give this reason
REPLACE = {"covering_sql": '''covering_sql = """
CREATE INDEX IF NOT EXISTS orders_created_cover ON orders (created_at)
    INCLUDE (customer_id, status, total);
VACUUM (ANALYZE) orders
"""'''}
