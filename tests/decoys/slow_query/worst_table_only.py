"""LIMIT 1: only the worst table, not one row per table (the same cause as a filter on the counters, idx_scan = 0 or seq_scan > 0)."""
CHECK = "slow_query.q2"
EXPECT = "one row per table"  # the verdict must give this reason
EDIT = {"seq_scans_sql": [("ORDER BY seq_tup_read DESC", "ORDER BY seq_tup_read DESC\nLIMIT 1")]}
