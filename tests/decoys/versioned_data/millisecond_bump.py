"""Steps past OLD.updated_at by a millisecond instead of a microsecond: when the version being
replaced began less than a millisecond ago, the new one begins after the UPDATE finished (and
possibly after its commit), so an AS OF query just after the commit returns the old price."""
CHECK = "versioned_data.q3"
EXPECT = ("after the UPDATE finished", "after it, on a session whose TimeZone")  # the probe, or an earlier change that was that fast
EDIT = {"clock_sql": [("OLD.updated_at + interval '1 microsecond'",
                       "OLD.updated_at + interval '1 millisecond'")]}
