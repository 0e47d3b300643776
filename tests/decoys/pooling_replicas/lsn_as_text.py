"""LSNs compared as Python strings: '9/F' sorts after '9/B832C000', and '10/0' before '9/…', so
the router trusts a replica that is behind, or distrusts one that has caught up."""
CHECK = "pooling_replicas.q3"
EXPECT = "as text"
EDIT = {"caught_up": [(
    """    return replica.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [lsn]).fetchone()[0]""",
    """    replayed = replica.execute("SELECT pg_last_wal_replay_lsn()::text").fetchone()[0]
    return replayed >= lsn""")]}
