"""Leaves room on every page (fillfactor 80, rewritten) but keeps the index on last_viewed_at,
which every bump changes: an UPDATE that changes an indexed column is never HOT, whatever the
free space, so every bump still adds an entry to every index."""
CHECK = "mvcc_bloat.q1"
EXPECT = "no indexed column changes"
EDIT = {"hot_sql": [("DROP INDEX product_stats_last_viewed_at_idx;\n", "")]}
