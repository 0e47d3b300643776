"""The right covering index plus a second covering one keyed on created_at "for the admin list":
the planner picks the first for the history page, while the second is maintained on every
insert and, alone, walks the whole index filtering customer_id. Each index of the answer is
judged alone."""
CHECK = "indexing.q3"
EXPECT = ("does not serve the history page by itself", "your index makes PostgreSQL touch")
REPLACE = {"covering_sql": '''covering_sql = """
CREATE INDEX IF NOT EXISTS orders_history_cover ON orders (customer_id, created_at)
    INCLUDE (status, total);
CREATE INDEX IF NOT EXISTS orders_created_cover ON orders (created_at)
    INCLUDE (customer_id, status, total);
VACUUM (ANALYZE) orders
"""'''}
