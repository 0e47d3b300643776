"""Reads pg_catalog.pg_stat_user_tables by its schema-qualified name, public schema only and
capped at 10 rows: tables of the application's other schemas are hidden, and the
qualified name reads the live counters rather than the check's snapshot (it must say so,
not blame the ordering)."""
CHECK = "slow_query.q2"
EXPECT = "does not read the statistics the check planted"  # the verdict must give this reason
REPLACE = {"seq_scans_sql": '''seq_scans_sql = """
SELECT relname, seq_scan, seq_tup_read, idx_scan, n_live_tup
FROM pg_catalog.pg_stat_user_tables
WHERE schemaname = 'public'
ORDER BY seq_tup_read DESC
LIMIT 10
"""'''}
