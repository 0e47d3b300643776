"""One UPDATE guarded by NOT EXISTS (no live holder), then a look to tell "taken" from "nothing to
do": NOT EXISTS cannot see another session's INSERT of the SKU that is not committed yet; the
UPDATE then waits on the unique index and, when that INSERT commits, 23505 escapes."""
CHECK = "soft_delete.q2"
EXPECT = "not yet committed when the restore began"  # the verdict must give this reason
REPLACE = {"restore_product": '''def restore_product(conn, product_id):
    restored = conn.execute("""
        UPDATE products p SET deleted_at = NULL, updated_at = now()
        WHERE p.id = %s AND p.deleted_at IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM products q
                          WHERE q.sku = p.sku AND q.deleted_at IS NULL)""",
                            [product_id]).rowcount
    if restored:
        conn.commit()
        return True
    row = conn.execute("SELECT sku FROM products WHERE id = %s AND deleted_at IS NOT NULL",
                       [product_id]).fetchone()
    conn.rollback()
    if row:
        raise ValueError(f"SKU {row[0]} is held by a live product")
    return False
'''}
