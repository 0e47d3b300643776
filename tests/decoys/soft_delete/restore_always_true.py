"""Sets deleted_at to NULL whatever the state and always answers True: a retried restore looks like a second one."""
CHECK = "soft_delete.q2"
EXPECT = "returned True; it should return False"  # the verdict must give this reason
REPLACE = {"restore_product": '''def restore_product(conn, product_id):
    try:
        conn.execute("UPDATE products SET deleted_at = NULL WHERE id = %s", [product_id])
    except psycopg.errors.UniqueViolation:
        conn.rollback()
        raise ValueError("SKU taken") from None
    conn.commit()
    return True
'''}
