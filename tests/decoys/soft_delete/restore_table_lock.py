"""Closes the check-then-update race with LOCK TABLE products IN SHARE ROW EXCLUSIVE MODE: every
restore queues behind every running writer on products, then stops every INSERT/UPDATE/DELETE
(the storefront, the vendor feed) until it commits."""
CHECK = "soft_delete.q2"
EXPECT = "conflicts with the ROW EXCLUSIVE lock"  # the verdict must give this reason
REPLACE = {"restore_product": '''def restore_product(conn, product_id):
    conn.execute("LOCK TABLE products IN SHARE ROW EXCLUSIVE MODE")
    row = conn.execute("SELECT sku FROM products WHERE id = %s AND deleted_at IS NOT NULL",
                       [product_id]).fetchone()
    if row is None:
        conn.rollback()
        return False
    holder = conn.execute("SELECT id FROM products WHERE sku = %s AND deleted_at IS NULL",
                          [row[0]]).fetchone()
    if holder:
        conn.rollback()
        raise ValueError(f"SKU {row[0]} is now product {holder[0]}")
    conn.execute("UPDATE products SET deleted_at = NULL, updated_at = now() WHERE id = %s",
                 [product_id])
    conn.commit()
    return True
'''}
