"""Retries correctly, then RESETs lock_timeout and statement_timeout: that puts back the server's
defaults (no timeout at all), not the values the caller had set on its connection."""
CHECK = "migrations.q1"
EXPECT = "not the caller's value"  # the verdict must give this reason
EDIT = {"run_ddl": [
    ("""        conn.execute("SELECT set_config('lock_timeout', %s, false), "
                     "set_config('statement_timeout', %s, false)", saved)""",
     """        conn.execute("RESET lock_timeout")
        conn.execute("RESET statement_timeout")"""),
]}
