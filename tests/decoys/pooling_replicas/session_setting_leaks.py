"""The handler bounds its wait with a session `SET lock_timeout` inside the request's
transaction: the setting outlives COMMIT on the server connection, and PgBouncer hands that
connection (and a 3 s lock_timeout nobody asked for) to the next client."""
CHECK = "pooling_replicas.q2"
EXPECT = "kept the session setting lock_timeout"
EDIT = {"handle_request": [(
    """conn.execute("SELECT pg_advisory_xact_lock(%s)", [user_id])""",
    """conn.execute("SET lock_timeout = '3s'")
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [user_id])""")]}
