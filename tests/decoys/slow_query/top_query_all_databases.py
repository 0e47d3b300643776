"""Ranks pg_stat_statements by total time but keeps every database: another database's heavier statement comes first."""
CHECK = "slow_query.q1"
EXPECT = 'statements of another database'  # the verdict must give this reason
REPLACE = {"top_query_sql": '''top_query_sql = """
SELECT query, calls, total_exec_time, mean_exec_time FROM pg_stat_statements
ORDER BY total_exec_time DESC LIMIT 5
"""'''}
