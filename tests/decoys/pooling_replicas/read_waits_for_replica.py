"""After a write, read() polls until the replica has replayed it, with no time limit: never
stale, but every read after a write takes as long as the replica's lag, and a replica minutes
behind (a bulk load, paused replay) makes those requests hang for minutes."""
CHECK = "pooling_replicas.q3"
EXPECT = "had not returned after"
EDIT = {"read": [(
    """    if session.last_lsn is None or caught_up(session.replica, session.last_lsn):
        return session.replica.execute(sql, params).fetchall()
    return session.primary.execute(sql, params).fetchall()""",
    """    import time
    while session.last_lsn is not None and not caught_up(session.replica, session.last_lsn):
        time.sleep(0.05)
    return session.replica.execute(sql, params).fetchall()""")]}
