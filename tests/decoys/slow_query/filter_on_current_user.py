"""Keeps this database's statements and only those of the current role (userid = current_user): the shop's application runs as its own role, so the engineer's session sees only its own psql statements and the history page is hidden."""
CHECK = "slow_query.q1"
EXPECT = "userid = current_user"  # the verdict must give this reason
EDIT = {"top_query_sql": [
    ("WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
     "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())\n"
     "  AND userid = (SELECT oid FROM pg_roles WHERE rolname = current_user)"),
]}
