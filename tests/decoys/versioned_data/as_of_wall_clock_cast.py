"""AS OF compares the bounds with the instant cast to timestamp WITHOUT time zone
(lower(valid) <= %(at)s::timestamp AND %(at)s::timestamp < upper(valid)). Each comparison
converts that wall-clock time back in the session's TimeZone: the same instant, except in the
hour a daylight-saving zone repeats when its clocks go back, where an instant of the first
pass comes back an hour later and the query answers with the next version (the price after
a change made at 01:50, asked for 01:45)."""
CHECK = "versioned_data.q2"
EXPECT = "converts it back to the second pass"
EDIT = {"as_of_sql": [("valid @> %(at)s::timestamptz",
                       "lower(valid) <= %(at)s::timestamp AND %(at)s::timestamp < upper(valid)"),
                      ("updated_at <= %(at)s::timestamptz", "updated_at <= %(at)s::timestamp")]}
