"""'Slow queries only': this database's statements with mean_exec_time > 10 ms, by total time. The filter hides the cheap statement called thousands of times that costs the server almost as much as the page (the same cause as calls < 100 or query ILIKE '%order_items%')."""
CHECK = "slow_query.q1"
EXPECT = "leaves out"  # the verdict must give this reason
EDIT = {"top_query_sql": [
    ("WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
     "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())\n  AND mean_exec_time > 10"),
]}
