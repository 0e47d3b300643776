"""A B-tree on the whole jsonb document: it knows equality and order, not containment."""
CHECK = "indexing.q6"
EXPECT = 'containment needs GIN'  # the verdict must give this reason
REPLACE = {"gin_sql": '''gin_sql = """
CREATE INDEX IF NOT EXISTS products_attributes_btree ON products (attributes)
"""'''}
