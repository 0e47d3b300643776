"""Writes each bound as a date ('2024-01-01'). PostgreSQL reads it in the session's TimeZone:
from a session in Adelaide or St. John's every month starts hours away from the UTC month the
shop's books use, and orders near midnight land in the neighbouring month's partition."""
CHECK = "partitioning.q1"
EXPECT = "TimeZone"
EDIT = {"create_month_partitions": [
    ("FROM ('{month.isoformat()}') TO ('{following.isoformat()}')",
     "FROM ('{month:%Y-%m-%d}') TO ('{following:%Y-%m-%d}')"),
]}
