"""Replaces the unique index on email with the lower(email) one ('the old index cannot help
login'): exact duplicate sign-ups are no longer refused (and a plain DROP INDEX locks out
every reader of customers)."""
CHECK = "indexing.q5"
EXPECT = "customers_email_key"  # the verdict must give this reason
REPLACE = {"login_sql": '''login_sql = """
DROP INDEX IF EXISTS customers_email_key;
CREATE INDEX IF NOT EXISTS customers_lower_email_active_idx ON customers (lower(email))
    WHERE deleted_at IS NULL
"""'''}
