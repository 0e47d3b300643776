"""Declares the switch-over time as `t timestamp` (without time zone) instead of timestamptz.
now() is converted to the session's wall clock and back: exact on ordinary days, but in the
hour a DST zone repeats in autumn the first pass (summer time) converts back to the second
(standard time): every version written then begins and ends an hour in the future (AS OF for
the next hour returns the old price), and the next UPDATE after the clocks go back computes a t
earlier than the row's updated_at: a backwards period, and the UPDATE fails."""
CHECK = "versioned_data.q1"
EXPECT = "the hour it will show twice"
EDIT = {"history_sql": [
    ("    t timestamptz := now();", "    t timestamp := now();"),
]}
