"""Reads deleted_at, then UPDATEs by id alone (no `AND deleted_at IS NOT NULL`): two concurrent
restores of the same product (an admin double-click, an API retry after a timeout) both see it
deleted and both return True: the decision is made on a stale read."""
CHECK = "soft_delete.q2"
EXPECT = "both returned True"
REPLACE = {"restore_product": '''def restore_product(conn, product_id):
    row = conn.execute("SELECT deleted_at FROM products WHERE id = %s", [product_id]).fetchone()
    if row is None or row[0] is None:
        conn.rollback()
        return False
    try:
        conn.execute("UPDATE products SET deleted_at = NULL, updated_at = now() WHERE id = %s",
                     [product_id])
    except psycopg.errors.UniqueViolation as exc:
        conn.rollback()
        raise ValueError(f"product {product_id}: SKU taken ({exc.diag.message_detail})") from None
    conn.commit()
    return True
'''}
