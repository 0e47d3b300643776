"""Keeps date(created_at): same rows, but the function hides the column from its index."""
CHECK = "indexing.q7"
EXPECT = 'still wrapped in a function or cast'  # the verdict must give this reason
REPLACE = {"by_day_sql": '''by_day_sql = """
SELECT id, total FROM orders WHERE created_at::date = '2026-03-02'
"""
by_customer_sql = """
SELECT id, total FROM orders WHERE customer_id = 42
"""'''}
