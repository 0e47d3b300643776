"""An exclusion constraint keyed by sku, not product_id: versions of one product under two SKUs may overlap (valid WITH = instead of && fails the same way)."""
CHECK = "versioned_data.q1"
EXPECT = 'does not stop two versions of one product from'  # the verdict must give this reason
EDIT = {"history_sql": [
    ("EXCLUDE USING gist (product_id WITH =, valid WITH &&)",
     "EXCLUDE USING gist (sku WITH =, valid WITH &&)"),
]}
