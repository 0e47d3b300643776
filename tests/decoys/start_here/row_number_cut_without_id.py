"""Takes the top five with row_number() OVER (ORDER BY created_at DESC), no id tiebreak, and
sorts by created_at DESC, id DESC only after the cut: which of the customers tied at the fifth
place make the five is left to the plan (a physical order that an UPDATE or VACUUM changes)."""
CHECK = "start_here.q1"
EXPECT = "id DESC"  # the verdict must give this reason
REPLACE = {"newest_sql": '''newest_sql = """
SELECT id, email, created_at FROM (
  SELECT id, email, created_at, row_number() OVER (ORDER BY created_at DESC) AS rn
  FROM customers WHERE deleted_at IS NULL) t
WHERE rn <= 5
ORDER BY created_at DESC, id DESC
"""'''}
