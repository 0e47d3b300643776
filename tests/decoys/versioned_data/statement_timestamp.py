"""t := statement_timestamp(): an UPDATE that waits for a row lock reaches the row after a concurrent version committed, and its statement's start is older than that version: a backwards period, the UPDATE fails."""
CHECK = "versioned_data.q3"
EXPECT = 'says nothing about when it reaches a row'  # the verdict must give this reason
EDIT = {"clock_sql": [
    ("t timestamptz := greatest(now(), OLD.updated_at + interval '1 microsecond');",
     "t timestamptz := statement_timestamp();"),
]}
