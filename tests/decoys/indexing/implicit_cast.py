"""Compares customer_id with text: the column is cast, so its index is not used."""
CHECK = "indexing.q7"
EXPECT = 'still wrapped in a function or cast'  # the verdict must give this reason
REPLACE = {"by_day_sql": '''by_day_sql = """
SELECT id, total FROM orders WHERE created_at >= '2026-03-02' AND created_at < '2026-03-03'
"""
by_customer_sql = """
SELECT id, total FROM orders WHERE customer_id::text = '42'
"""'''}
