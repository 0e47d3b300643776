"""greatest(now(), OLD.updated_at): when the transaction started before the version it replaces, the period [t, t) is empty."""
CHECK = "versioned_data.q3"
EXPECT = 'empty period'  # the verdict must give this reason
EDIT = {"clock_sql": [
    ("t timestamptz := greatest(now(), OLD.updated_at + interval '1 microsecond');",
     "t timestamptz := greatest(now(), OLD.updated_at);"),
]}
