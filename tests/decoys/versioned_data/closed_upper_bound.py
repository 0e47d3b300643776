"""Treats periods as closed, lower <= at <= upper: at a switch-over instant two versions answer."""
CHECK = "versioned_data.q2"
EXPECT = 'two versions claim the same instant'  # the verdict must give this reason
REPLACE = {"as_of_sql": '''as_of_sql = """
SELECT price FROM products_history
WHERE product_id = %(product_id)s::bigint
  AND lower(valid) <= %(at)s::timestamptz AND %(at)s::timestamptz <= upper(valid)
UNION ALL
SELECT price FROM products
WHERE id = %(product_id)s::bigint AND updated_at <= %(at)s::timestamptz
"""'''}
