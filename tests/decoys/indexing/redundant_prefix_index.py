"""The composite index plus a separate index on shipping_country "for the queries that filter by
country only": (shipping_country) is a prefix of (shipping_country, created_at), which already
serves every such query. A second B-tree on orders, maintained on every insert, for nothing."""
CHECK = "indexing.q1"
EXPECT = "is redundant next to"
REPLACE = {"composite_sql": '''composite_sql = """
CREATE INDEX IF NOT EXISTS orders_country_idx ON orders (shipping_country);
CREATE INDEX IF NOT EXISTS orders_country_created_idx ON orders (shipping_country, created_at)
"""'''}
