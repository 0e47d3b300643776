"""Deduplicates the batch on lower(sku), as if skus were case insensitive: products whose
skus differ only in case (`q3ab-case-1`, `Q3AB-CASE-1`) are distinct, and all but one of
them are silently dropped from every batch."""
CHECK = "upserts.q3"
EXPECT = 'skus are case sensitive'  # the verdict must give this reason
EDIT = {"load_feed": [
    ("SELECT DISTINCT ON (sku) sku,", "SELECT DISTINCT ON (lower(sku)) sku,"),
    ("ORDER BY sku, version DESC", "ORDER BY lower(sku), version DESC"),
]}
