"""A full index on (lower(email), deleted_at) instead of a partial one: deleted_at IS NULL is in
the Index Cond, but every soft-deleted customer stays in the index for good."""
CHECK = "indexing.q5"
EXPECT = "soft-deleted customers"
REPLACE = {"login_sql": '''login_sql = """
CREATE INDEX IF NOT EXISTS customers_lower_email_deleted_idx ON customers (lower(email), deleted_at)
"""'''}
