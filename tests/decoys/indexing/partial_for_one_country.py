"""A partial index WHERE shipping_country = 'FR': serves the notebook's example, no other country."""
CHECK = "indexing.q1"
EXPECT = 'partial index'  # the verdict must give this reason
REPLACE = {"composite_sql": '''composite_sql = """
CREATE INDEX IF NOT EXISTS orders_fr_created_idx ON orders (shipping_country, created_at)
    WHERE shipping_country = 'FR'
"""'''}
