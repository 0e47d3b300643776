"""VACUUM FULL after the load, then VACUUM (ANALYZE): statistics and visibility map are
right, but VACUUM FULL rewrites the whole table under an ACCESS EXCLUSIVE lock (every reader
waits) for nothing, since a fresh insert-only load has no dead rows to reclaim."""
CHECK = "large_datasets.q4"
EXPECT = 'truncated or rewrote events'  # the verdict must give this reason
REPLACE = {"after_load_sql": '''after_load_sql = """
VACUUM FULL events;
VACUUM (ANALYZE) events
"""'''}
