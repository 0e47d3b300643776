"""Adds the view but keeps the global unique index: a deleted product's SKU can never be reused."""
CHECK = "soft_delete.q1"
EXPECT = "cannot reuse the SKU"  # the verdict must give this reason
REPLACE = {"soft_delete_sql": '''soft_delete_sql = """
CREATE OR REPLACE VIEW active_products AS
    SELECT * FROM products WHERE deleted_at IS NULL;
"""'''}
