"""The right (shipping_country, created_at) index plus (created_at, shipping_country) beside it
"for the date-only queries": the second one is maintained on every insert, and which of the two
the planner picks for the screen depends on the data (on some it walks every country's entries
of the range). Each index of the answer is judged alone."""
CHECK = "indexing.q1"
EXPECT = "not the equality column"
REPLACE = {"composite_sql": '''composite_sql = """
CREATE INDEX IF NOT EXISTS orders_country_created_idx ON orders (shipping_country, created_at);
CREATE INDEX IF NOT EXISTS orders_created_country_idx ON orders (created_at, shipping_country)
"""'''}
