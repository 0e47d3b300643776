"""Restores with a plain UPDATE: when a live product has taken the SKU, 23505 reaches the caller."""
CHECK = "soft_delete.q2"
EXPECT = "let SQLSTATE 23505 escape"  # the verdict must give this reason
REPLACE = {"restore_product": '''def restore_product(conn, product_id):
    restored = conn.execute("UPDATE products SET deleted_at = NULL, updated_at = now() "
                            "WHERE id = %s "
                            "AND deleted_at IS NOT NULL", [product_id]).rowcount
    conn.commit()
    return restored == 1
'''}
