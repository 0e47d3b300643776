"""Takes LOCK TABLE products IN SHARE UPDATE EXCLUSIVE MODE for the load ("so two loads never
deadlock"): ordinary writers pass, but every other load queues behind it, and so do VACUUM,
ANALYZE (autovacuum gives up on products while loads run back to back), CREATE INDEX
CONCURRENTLY and any ALTER TABLE. The task: lock only the rows it writes."""
CHECK = "upserts.q3"
EXPECT = "ANALYZE products"
EDIT = {"load_feed": [
    ("    with conn.cursor() as cur:\n        cur.execute(\"\"\"\n            CREATE TEMP TABLE",
     "    with conn.cursor() as cur:\n        cur.execute(\"LOCK TABLE products IN SHARE UPDATE EXCLUSIVE MODE\")  # one load at a time\n        cur.execute(\"\"\"\n            CREATE TEMP TABLE")]}
