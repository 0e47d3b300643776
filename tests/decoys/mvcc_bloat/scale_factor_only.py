"""Lowers the scale factor to 5% and keeps the default threshold: the trigger still grows with
the table (500,050 dead rows at 10 million rows), so a hot table's dead rows pile up between
long autovacuum runs."""
CHECK = "mvcc_bloat.q4"
EXPECT = "grow with the table"
EDIT = {"autovacuum_sql": [("autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000",
                            "autovacuum_vacuum_scale_factor = 0.05")]}
