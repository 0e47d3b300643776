"""The creation time given a Python-side default of naive `datetime.utcnow` ("the model fills
created_at"): a naive value has no zone, so PostgreSQL reads it in the session's TimeZone, and
on a session that is not in UTC every new customer's "CRT_TS" is off by the zone's offset."""
CHECK = "schema_first.q1"
EXPECT = "naive datetime"  # the verdict must give this reason
EDIT = {"Customer": [
    ('mapped_column("CRT_TS", DateTime(timezone=True),\n                                                    server_default="now()")',
     'mapped_column("CRT_TS", DateTime(timezone=True),\n                                                    default=dt.datetime.utcnow)')]}
