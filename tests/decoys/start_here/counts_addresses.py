"""Counts colliding addresses instead of the customers who hold them."""
CHECK = "start_here.q2"
EXPECT = 'Count customers'  # the verdict must give this reason
REPLACE = {"collisions_sql": '''collisions_sql = """
SELECT count(*) AS n FROM (
    SELECT lower(email) FROM customers GROUP BY lower(email) HAVING count(*) > 1) d
"""'''}
