"""Five copies of one index: not a ladder of different indexes."""
CHECK = "indexing.q8"
EXPECT = 'the same index under another name'  # the verdict must give this reason
REPLACE = {"index_ladder": '''index_ladder = ["CREATE INDEX ON orders_copy (status)"] * 5'''}
