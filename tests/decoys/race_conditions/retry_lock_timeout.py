"""Treats lock_timeout (55P03) and statement_timeout (57014) as 'transient' and retries them
like 40001/40P01: the caller's lock_timeout (its bound on how long a payment may wait for a
busy account) becomes 8 times longer, so a transfer stuck behind a long lock holds a request
thread for 8 × lock_timeout instead of failing when the caller said."""
CHECK = "race_conditions.q1"
EXPECT = "it retried the lock timeout"
EDIT = {"transfer": [
    ('''if exc.sqlstate in ("40001", "40P01"):''',
     '''if exc.sqlstate in ("40001", "40P01", "55P03", "57014"):  # transient: try again'''),
]}
