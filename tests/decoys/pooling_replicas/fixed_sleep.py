"""After a write, sleep a fixed 300 ms and then read the replica: a guess about the lag. Under a
longer apply delay (or a replica that has stopped replaying) the read is stale."""
CHECK = "pooling_replicas.q3"
EXPECT = "stale read"
EDIT = {"read": [(
    """    if session.last_lsn is None or caught_up(session.replica, session.last_lsn):
        return session.replica.execute(sql, params).fetchall()
    return session.primary.execute(sql, params).fetchall()""",
    """    import time
    if session.last_lsn is not None:
        time.sleep(0.3)
        session.last_lsn = None
    return session.replica.execute(sql, params).fetchall()""")]}
