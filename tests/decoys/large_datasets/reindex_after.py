"""VACUUM (ANALYZE) and then REINDEX TABLE events: rebuilds the freshly built index for
nothing, blocking writers and the index's readers meanwhile. (DROP INDEX and CREATE INDEX
again fails for the same reason: a new index file.)"""
CHECK = "large_datasets.q4"
EXPECT = "rebuilt the index"  # the verdict must give this reason
EDIT = {"after_load_sql": [
    ("VACUUM (ANALYZE) events", "VACUUM (ANALYZE) events;\nREINDEX TABLE events"),
]}
