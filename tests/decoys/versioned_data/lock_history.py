"""Serialises versioning with LOCK TABLE products_history IN SHARE ROW EXCLUSIVE MODE: every product write waits for every other open one until it commits."""
CHECK = "versioned_data.q3"
EXPECT = 'serialises every write of products'  # the verdict must give this reason
EDIT = {"clock_sql": [
    ("BEGIN\n    INSERT INTO products_history",
     "BEGIN\n    LOCK TABLE products_history IN SHARE ROW EXCLUSIVE MODE;\n    INSERT INTO products_history"),
]}
