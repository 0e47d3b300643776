"""Every read goes to the replica: a profile read right after its own write comes from a
replica that has not replayed it yet, and the user sees the old value."""
CHECK = "pooling_replicas.q3"
EXPECT = "stale read"
EDIT = {"read": [(
    """    if session.last_lsn is None or caught_up(session.replica, session.last_lsn):
        return session.replica.execute(sql, params).fetchall()
    return session.primary.execute(sql, params).fetchall()""",
    """    return session.replica.execute(sql, params).fetchall()""")]}
