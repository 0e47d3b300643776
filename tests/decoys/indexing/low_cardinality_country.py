"""An index on the low-cardinality country alone: the date is still a Filter."""
CHECK = "indexing.q1"
EXPECT = 'not in its Index Cond'  # the verdict must give this reason
REPLACE = {"composite_sql": '''composite_sql = """
CREATE INDEX IF NOT EXISTS orders_country_idx ON orders (shipping_country)
"""'''}
