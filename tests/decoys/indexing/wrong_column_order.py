"""Range column first: (created_at, shipping_country) walks every country's entries in the date range."""
CHECK = "indexing.q1"
EXPECT = 'Put the equality column first'  # the verdict must give this reason
REPLACE = {"composite_sql": '''composite_sql = """
CREATE INDEX IF NOT EXISTS orders_created_country_idx ON orders (created_at, shipping_country)
"""'''}
