"""UNIQUE (sku, deleted_at) NULLS NOT DISTINCT instead of a partial index: deleted rows still
count, so deleting a second product of the same SKU at the same instant fails with 23505."""
CHECK = "soft_delete.q1"
EXPECT = "still counts deleted rows"  # the verdict must give this reason
EDIT = {"soft_delete_sql": [("ON products (sku) WHERE deleted_at IS NULL;",
                             "ON products (sku, deleted_at) NULLS NOT DISTINCT;")]}
