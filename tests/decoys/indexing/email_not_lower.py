"""Indexes email as typed: lower(email) = ... cannot use it (function on the column)."""
CHECK = "indexing.q5"
EXPECT = 'lower(email) in its Index Cond'  # the verdict must give this reason
REPLACE = {"login_sql": '''login_sql = """
CREATE INDEX IF NOT EXISTS customers_email_active_idx ON customers (email) WHERE deleted_at IS NULL
"""'''}
