"""Forgets the soft delete: deleted customers show up among the newest."""
CHECK = "start_here.q1"
REPLACE = {"newest_sql": '''newest_sql = """
SELECT id, email, created_at FROM customers ORDER BY created_at DESC, id DESC LIMIT 5
"""'''}
