"""VACUUM (ANALYZE, SKIP_LOCKED) events: when autovacuum is already at work on the freshly
loaded table (as it often is after a bulk load), the job's VACUUM and ANALYZE skip it with
only a WARNING, and the next queries run without statistics or visibility map."""
CHECK = "large_datasets.q4"
EXPECT = "SKIP_LOCKED skips a table"  # the verdict must give this reason
EDIT = {"after_load_sql": [("VACUUM (ANALYZE) events", "VACUUM (ANALYZE, SKIP_LOCKED) events")]}
