"""On each lock timeout, cancels the application's queries that have been running for over a
second and hold a lock on a table (pg_cancel_backend): a report or an export the application
is serving fails with 57014 so that the migration can go first."""
CHECK = "migrations.q1"
EXPECT = "cancelled the application's running query"  # the verdict must give this reason
EDIT = {"run_ddl": [
    ("                # full jitter", """                conn.execute(\"\"\"SELECT pg_cancel_backend(a.pid) FROM pg_stat_activity a
                                WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
                                  AND a.state = 'active'
                                  AND a.query_start < now() - interval '1 second'
                                  AND EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid
                                              AND l.locktype = 'relation' AND l.granted)\"\"\")
                # full jitter"""),
]}
