"""Only SELECT statements (query ILIKE 'select%'): hides checkout's UPDATE, one of this database's costliest statements; writes cost the server as much as reads (the same cause as any filter on the statement's text)."""
CHECK = "slow_query.q1"
EXPECT = ("leaves out `UPDATE", "leaves out `INSERT", "leaves out `COPY", "leaves out `REFRESH")  # a write
EDIT = {"top_query_sql": [
    ("WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
     "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())\n  AND query ILIKE 'select%'"),
]}
