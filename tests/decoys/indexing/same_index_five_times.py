"""Five copies of one index: not a ladder of different indexes."""
CHECK = "indexing.q8"
REPLACE = {"index_ladder": '''index_ladder = ["CREATE INDEX ON orders_copy (status)"] * 5'''}
