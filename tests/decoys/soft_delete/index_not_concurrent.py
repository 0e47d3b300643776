"""Builds the partial unique index without CONCURRENTLY: the build holds ShareLock on products,
so every INSERT, UPDATE and DELETE waits until it ends (the SQL reads almost the same)."""
CHECK = "soft_delete.q1"
EXPECT = "waited for ShareLock on products"  # the verdict must give this reason
EDIT = {"soft_delete_sql": [("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS",
                             "CREATE UNIQUE INDEX IF NOT EXISTS")]}
