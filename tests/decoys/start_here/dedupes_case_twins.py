"""Keeps one customer per case-insensitive address (DISTINCT ON (lower(email))): two active
customers whose emails differ only by case are two customers, and one of them is dropped."""
CHECK = "start_here.q1"
EXPECT = "they are two customers"  # the verdict must give this reason
REPLACE = {"newest_sql": '''newest_sql = """
SELECT id, email, created_at FROM (
  SELECT DISTINCT ON (lower(email)) id, email, created_at FROM customers
  WHERE deleted_at IS NULL ORDER BY lower(email), created_at DESC, id DESC) d
ORDER BY created_at DESC, id DESC LIMIT 5
"""'''}
