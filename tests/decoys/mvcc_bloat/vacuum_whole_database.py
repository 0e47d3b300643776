"""Reclaims the dead rows with VACUUM (ANALYZE) and no table name: it reads every table of the
database, hours of I/O at production size for tables that did not need it."""
CHECK = "mvcc_bloat.q4"
EXPECT = "other tables"
EDIT = {"autovacuum_sql": [("VACUUM (ANALYZE) product_stats;", "VACUUM (ANALYZE);")]}
