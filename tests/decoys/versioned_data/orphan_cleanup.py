"""The migration 'keeps the history consistent': every run deletes history rows whose product no
longer exists. The history planted between runs belongs to a live product and survives; in
production every deploy erases the whole past of every hard-deleted product, exactly the rows
a dispute about a discontinued product needs."""
CHECK = "versioned_data.q1"
EXPECT = "of one deleted long ago"
EDIT = {"history_sql": [
    ("CREATE OR REPLACE FUNCTION products_keep_history()",
     "-- keep the history consistent with the catalogue\n"
     "DELETE FROM products_history h\n"
     "WHERE NOT EXISTS (SELECT FROM products p WHERE p.id = h.product_id);\n\n"
     "CREATE OR REPLACE FUNCTION products_keep_history()"),
]}
