"""handle_request PREPAREs its lock statement once per server connection: the prepared
statement stays on the server connection PgBouncer hands to the next client."""
CHECK = "pooling_replicas.q2"
EXPECT = "prepared statement"
REPLACE = {"handle_request": '''def handle_request(conn, user_id, work):
    with conn.transaction():
        conn.execute("SELECT set_config('app.user_id', %s, true)", [str(user_id)])
        if not conn.execute("SELECT count(*) FROM pg_prepared_statements "
                            "WHERE name = 'lock_user'").fetchone()[0]:
            conn.execute("PREPARE lock_user(bigint) AS SELECT pg_advisory_xact_lock($1)")
        conn.execute(f"EXECUTE lock_user({int(user_id)})")
        return work(conn)
'''}
