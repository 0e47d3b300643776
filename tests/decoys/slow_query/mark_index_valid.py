"""Marks the deploy's INVALID index valid in the catalogue (UPDATE pg_index SET indisvalid)
instead of rebuilding it: the failed CREATE INDEX CONCURRENTLY never read the table, so the
"valid" index is empty (after a later failure it would miss rows), and every page it serves
errors out or loses items."""
CHECK = "slow_query.q3"
EXPECT = "never built"  # the verdict must give this reason
REPLACE = {"index_sql": '''index_sql = """
UPDATE pg_index SET indisvalid = true, indisready = true
WHERE indexrelid = 'order_items_order_id_idx'::regclass
"""'''}
