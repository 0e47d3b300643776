"""Groups by email as stored: the unique index guarantees this finds nothing."""
CHECK = "start_here.q2"
EXPECT = 'no collisions'  # the verdict must give this reason
REPLACE = {"collisions_sql": '''collisions_sql = """
SELECT coalesce(sum(n), 0) AS n FROM (
    SELECT count(*) AS n FROM customers GROUP BY email HAVING count(*) > 1) d
"""'''}
