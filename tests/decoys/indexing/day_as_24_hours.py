"""The day's end as its midnight + interval '24 hours': on a day the clocks change it has 23 or
25 hours, so the query takes an hour of the next day or leaves out the last hour."""
CHECK = "indexing.q7"
EXPECT = "a POSIX zone in which 2 March 2026 has"
EDIT = {"by_day_sql": [("created_at < date '2026-03-02' + 1",
                        "created_at < timestamptz '2026-03-02' + interval '24 hours'")]}
