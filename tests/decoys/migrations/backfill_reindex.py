"""Ends the backfill with a plain REINDEX TABLE users ("the batches bloated the indexes"): it
holds SHARE on users (every INSERT, UPDATE and DELETE waits) and ACCESS EXCLUSIVE on each index
while it rebuilds every index of a 10-million-row table. At tiny scale it lasts milliseconds, so
only the indexes' new relfilenodes show it every time."""
CHECK = "migrations.q2"
EXPECT = "REINDEX"  # the verdict must give this reason
EDIT = {"backfill": [('conn.execute("VACUUM (ANALYZE) users")',
                      'conn.execute("VACUUM (ANALYZE) users")\n    conn.execute("REINDEX TABLE users")')]}
