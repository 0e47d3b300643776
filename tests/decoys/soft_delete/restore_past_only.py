"""Restores only products whose deleted_at has passed (deleted_at < now()): a product deleted with
a deleted_at ahead of the database's clock is hidden by active_products, yet restore says False,
"nothing to restore"."""
CHECK = "soft_delete.q2"
EXPECT = "ahead of the database's clock"  # the verdict must give this reason
EDIT = {"restore_product": [("AND deleted_at IS NOT NULL", "AND deleted_at < now()")]}
