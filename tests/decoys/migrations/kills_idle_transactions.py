"""After a lock timeout, terminates every session of the database idle in a transaction for
more than a second: the application's transactions (and their work) are killed."""
CHECK = "migrations.q1"
EXPECT = "terminated the application's transaction"  # the verdict must give this reason
EDIT = {"run_ddl": [
    ("                # full jitter: two migrations retrying never fall into lockstep",
     """                conn.execute(\"\"\"SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                                WHERE datname = current_database() AND pid <> pg_backend_pid()
                                  AND state = 'idle in transaction'
                                  AND state_change < now() - interval '1 second'\"\"\")
                # full jitter: two migrations retrying never fall into lockstep"""),
]}
