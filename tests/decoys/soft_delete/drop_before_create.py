"""Drops products_sku_key before building the partial unique index: for the whole build (minutes
at 10 million rows) nothing enforces SKU uniqueness; two live products can take one SKU, and the
build then fails, leaving an INVALID index and no uniqueness at all."""
CHECK = "soft_delete.q1"
EXPECT = "no valid unique index on sku"  # the verdict must give this reason
REPLACE = {"soft_delete_sql": '''soft_delete_sql = """
CREATE OR REPLACE VIEW active_products AS
    SELECT * FROM products WHERE deleted_at IS NULL;
DROP INDEX CONCURRENTLY IF EXISTS products_sku_key;
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS products_sku_active_key
    ON products (sku) WHERE deleted_at IS NULL;
"""'''}
