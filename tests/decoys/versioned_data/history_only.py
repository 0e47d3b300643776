"""Looks only in the history: the current version is never found."""
CHECK = "versioned_data.q2"
EXPECT = 'lives in products'  # the verdict must give this reason
REPLACE = {"as_of_sql": '''as_of_sql = """
SELECT price FROM products_history
WHERE product_id = %(product_id)s::bigint AND valid @> %(at)s::timestamptz
"""'''}
