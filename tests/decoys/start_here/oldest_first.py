"""Sorts ascending: the five *oldest* active customers."""
CHECK = "start_here.q1"
EXPECT = 'differs from the expected result'  # the verdict must give this reason
REPLACE = {"newest_sql": '''newest_sql = """
SELECT id, email, created_at FROM customers WHERE deleted_at IS NULL
ORDER BY created_at, id LIMIT 5
"""'''}
