"""A session advisory lock around the transaction (pg_advisory_lock ... pg_advisory_unlock):
behind PgBouncer each statement runs on the next server connection, so the unlock asks a
backend that does not hold the lock, and the lock stays on a pooled server connection."""
CHECK = "pooling_replicas.q2"
EXPECT = "advisory lock"
REPLACE = {"handle_request": '''def handle_request(conn, user_id, work):
    conn.execute("SELECT pg_advisory_lock(%s)", [user_id])
    try:
        with conn.transaction():
            conn.execute("SELECT set_config('app.user_id', %s, true)", [str(user_id)])
            return work(conn)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", [user_id])
'''}
