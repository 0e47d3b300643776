"""Ranks tables by n_live_tup: the biggest table, not the one whose sequential scans read the most rows."""
CHECK = "slow_query.q2"
EXPECT = 'ranking by size'  # the verdict must give this reason
EDIT = {"seq_scans_sql": [
    ("ORDER BY seq_tup_read DESC", "ORDER BY n_live_tup DESC"),
]}
