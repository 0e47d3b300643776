"""Un-deletes every product first, so that a view over products and products WHERE deleted_at
IS NULL trivially agree: the data edited until the check has nothing left to judge."""
CHECK = "soft_delete.q1"
EXPECT = "un-deleted"  # the verdict must give this reason
EDIT = {"soft_delete_sql": [("CREATE OR REPLACE VIEW active_products AS",
                             "UPDATE products SET deleted_at = NULL;\n"
                             "CREATE OR REPLACE VIEW active_products AS")]}
