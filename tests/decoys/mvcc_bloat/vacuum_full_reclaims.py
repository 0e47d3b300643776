"""Reclaims today's dead rows with VACUUM FULL: it rewrites the table holding ACCESS EXCLUSIVE,
so every page view's UPDATE (and every read) waits for the whole rewrite."""
CHECK = "mvcc_bloat.q4"
EXPECT = "ACCESS EXCLUSIVE"
EDIT = {"autovacuum_sql": [("VACUUM (ANALYZE) product_stats;", "VACUUM FULL product_stats;")]}
