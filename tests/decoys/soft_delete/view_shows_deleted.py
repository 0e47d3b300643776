"""The view filters on the wrong condition (deleted_at < now() is NULL-blind): it lists deleted products."""
CHECK = "soft_delete.q1"
EXPECT = "soft-deleted products"  # the verdict must give this reason
REPLACE = {"soft_delete_sql": '''soft_delete_sql = """
CREATE OR REPLACE VIEW active_products AS
    SELECT * FROM products WHERE deleted_at IS NULL OR deleted_at < now();
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS products_sku_active_key
    ON products (sku) WHERE deleted_at IS NULL;
DROP INDEX CONCURRENTLY IF EXISTS products_sku_key;
"""'''}
