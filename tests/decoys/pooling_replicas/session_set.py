"""set_config(..., false), a session SET, inside the request's transaction: the audit rows are
right, but the setting stays on the server connection after COMMIT, and PgBouncer hands it to
the next client, whose request then runs as this user."""
CHECK = "pooling_replicas.q2"
EXPECT = "SET LOCAL"
EDIT = {"handle_request": [(
    """conn.execute("SELECT set_config('app.user_id', %s, true)", [str(user_id)])""",
    """conn.execute("SELECT set_config('app.user_id', %s, false)", [str(user_id)])""")]}
