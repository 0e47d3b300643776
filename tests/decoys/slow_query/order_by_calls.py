"""Ranks statements by calls: the cheap product lookup is called as often as the page."""
CHECK = "slow_query.q1"
EXPECT = 'total_exec_time'  # the verdict must give this reason
REPLACE = {"top_query_sql": '''top_query_sql = """
SELECT query, calls, total_exec_time, mean_exec_time FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
ORDER BY calls DESC, query LIMIT 5
"""'''}
