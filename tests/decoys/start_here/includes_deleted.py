"""Forgets the soft delete: deleted customers show up among the newest."""
CHECK = "start_here.q1"
EXPECT = 'soft-deleted'  # the verdict must give this reason
REPLACE = {"newest_sql": '''newest_sql = """
SELECT id, email, created_at FROM customers ORDER BY created_at DESC, id DESC LIMIT 5
"""'''}
