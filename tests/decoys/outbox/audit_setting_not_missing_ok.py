"""The audit trigger reads current_setting('app.username') without missing_ok: in a session
that never set it (a psql hot-fix, a batch job) the trigger raises "unrecognized configuration
parameter", so every write to orders from such a client fails."""
CHECK = "outbox.q3"
EXPECT = "never set app.username failed"
EDIT = {"audit_sql": [("nullif(current_setting('app.username', true), '')",
                       "nullif(current_setting('app.username'), '')")]}
