"""Replaces the unique index by a partial index that is not UNIQUE: two live products can share a SKU."""
CHECK = "soft_delete.q1"
EXPECT = "Two active products can now share"  # the verdict must give this reason
REPLACE = {"soft_delete_sql": '''soft_delete_sql = """
CREATE OR REPLACE VIEW active_products AS
    SELECT * FROM products WHERE deleted_at IS NULL;
CREATE INDEX CONCURRENTLY IF NOT EXISTS products_sku_active_idx
    ON products (sku) WHERE deleted_at IS NULL;
DROP INDEX CONCURRENTLY IF EXISTS products_sku_key;
"""'''}
