"""Ranks tables by how many seq scans ran, not by how many rows they read."""
CHECK = "slow_query.q2"
EXPECT = 'seq_tup_read'  # the verdict must give this reason
REPLACE = {"seq_scans_sql": '''seq_scans_sql = """
SELECT relname, seq_scan, seq_tup_read, idx_scan FROM pg_stat_user_tables
ORDER BY seq_scan DESC, relname
"""'''}
