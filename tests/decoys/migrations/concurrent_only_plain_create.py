"""Recognises a concurrent build only by the literal prefix CREATE INDEX CONCURRENTLY: a
CREATE UNIQUE INDEX CONCURRENTLY or a REINDEX INDEX CONCURRENTLY runs with the 200 ms
lock_timeout, is cancelled while it waits for running transactions and leaves an INVALID index
(which the retry's IF NOT EXISTS then skips)."""
CHECK = "migrations.q1"
EXPECT = "INVALID"
EDIT = {"run_ddl": [('re.match(r"\\s*(CREATE\\s+(UNIQUE\\s+)?INDEX|REINDEX)\\b.*\\bCONCURRENTLY\\b", statement,\n                re.IGNORECASE | re.DOTALL)',
                     'statement.lstrip().upper().startswith("CREATE INDEX CONCURRENTLY")')]}
