"""Keeps exercise 1's now() as the switch-over time: a transaction that started first and commits last writes a backwards period."""
CHECK = "versioned_data.q3"
EXPECT = 'now() is the start of the'  # the verdict must give this reason
EDIT = {"clock_sql": [
    ("t timestamptz := greatest(now(), OLD.updated_at + interval '1 microsecond');",
     't timestamptz := now();'),
]}
