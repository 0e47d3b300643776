"""write() reads the LSN inside the write's own transaction, before its COMMIT record exists: a
replica that has replayed up to that LSN has not replayed the commit, so a read routed by it is
stale whenever the commit is the next record to replay (on a quiet server, every time)."""
CHECK = "pooling_replicas.q3"
EXPECT = "the LSN was taken before the write committed"
EDIT = {"write": [(
    """    session.primary.execute(sql, params)  # autocommit: committed when this returns
    session.last_lsn = session.primary.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]""",
    """    with session.primary.transaction():
        session.primary.execute(sql, params)
        session.last_lsn = session.primary.execute(
            "SELECT pg_current_wal_insert_lsn()::text").fetchone()[0]""")]}
