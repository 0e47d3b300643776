"""handle_request turns autocommit off on the client connection and never puts it back: the
next request on that connection runs inside an implicit transaction nobody commits."""
CHECK = "pooling_replicas.q2"
EXPECT = "autocommit off"
REPLACE = {"handle_request": '''def handle_request(conn, user_id, work):
    conn.autocommit = False
    try:
        conn.execute("SELECT set_config('app.user_id', %s, true)", [str(user_id)])
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [user_id])
        result = work(conn)
        conn.commit()
        return result
    except BaseException:
        conn.rollback()
        raise
'''}
