"""Takes the switch-over time as now() AT TIME ZONE 'UTC': a timestamp read back in the session's TimeZone, hours off."""
CHECK = "versioned_data.q1"
EXPECT = 'session whose TimeZone is'  # the verdict must give this reason
EDIT = {"history_sql": [
    ("t timestamptz := now();",
     "t timestamptz := greatest(now() AT TIME ZONE 'UTC', OLD.updated_at + interval '1 microsecond');"),
]}
