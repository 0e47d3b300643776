"""Fires only on UPDATE OF the kept columns: an UPDATE that sets only updated_at (an ORM 'touch', a
backdating client) or only category/vendor with an app-clock updated_at bypasses the trigger, and
the client's updated_at overlaps the last history version."""
CHECK = "versioned_data.q1"
EXPECT = "changed no column the history keeps"
EDIT = {"history_sql": [("BEFORE UPDATE OR DELETE ON products",
                         "BEFORE UPDATE OF sku, name, price, attributes, deleted_at OR DELETE ON products")]}
