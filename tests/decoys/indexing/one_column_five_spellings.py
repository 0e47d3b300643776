"""Five spellings of an index on customer_id (DESC, NULLS FIRST, hash, fillfactor): the same
index five times, each maintained on every insert."""
CHECK = "indexing.q8"
EXPECT = "the same index under another name"  # the verdict must give this reason
REPLACE = {"index_ladder": '''index_ladder = [
    "CREATE INDEX ON orders_copy (customer_id)",
    "CREATE INDEX ON orders_copy (customer_id DESC)",
    "CREATE INDEX ON orders_copy (customer_id NULLS FIRST)",
    "CREATE INDEX ON orders_copy USING hash (customer_id)",
    "CREATE INDEX ON orders_copy (customer_id) WITH (fillfactor = 70)",
]'''}
