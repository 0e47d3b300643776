"""Casts the cursor to timestamp without time zone: in the hour repeated when daylight saving time ends in the session's TimeZone, the cursor comes back an hour off and page 2 repeats or skips orders."""
CHECK = "slow_query.q4"
EXPECT = "daylight saving time ends"  # the verdict must give this reason
EDIT = {"page_sql": [("(%(before_created_at)s, %(before_id)s)",
                      "(%(before_created_at)s::timestamp, %(before_id)s)")]}
