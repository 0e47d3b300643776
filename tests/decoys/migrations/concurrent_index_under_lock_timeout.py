"""The previous reference: CREATE INDEX CONCURRENTLY runs under the same 200 ms lock_timeout as
every other statement. A concurrent build waits for running writers after its index is in the
catalogue, so the timeout cancels it there and leaves the index INVALID; the retry's IF NOT
EXISTS then skips it and run_ddl "succeeds"."""
CHECK = "migrations.q1"
EXPECT = "INVALID"  # the verdict must give this reason
EDIT = {"run_ddl": [
    ("""        conn.execute("SET lock_timeout = 0")
""",
     """        pass  # same short lock_timeout as any other DDL
"""),
]}
