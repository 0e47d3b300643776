"""Ranks this database's statements by mean_exec_time: a slow report run twice outranks the page run forty times."""
CHECK = "slow_query.q1"
EXPECT = 'slowest per call'  # the verdict must give this reason
EDIT = {"top_query_sql": [
    ("ORDER BY total_exec_time DESC", "ORDER BY mean_exec_time DESC"),
]}
