"""Looks for a live holder of the SKU first, then updates: another session can re-list the SKU
between the look and the UPDATE, and the 23505 the check ruled out escapes to the caller."""
CHECK = "soft_delete.q2"
EXPECT = "between two of its statements"  # the verdict must give this reason
REPLACE = {"restore_product": '''def restore_product(conn, product_id):
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
