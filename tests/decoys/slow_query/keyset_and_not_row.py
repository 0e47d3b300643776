"""Keyset written as created_at <= c AND id < i instead of the row comparison: skips older orders that have a higher id."""
CHECK = "slow_query.q4"
EXPECT = "older created_at"  # the verdict must give this reason
EDIT = {"skew_index_sql": [
    ("AND (created_at, id) < (%(before_created_at)s, %(before_id)s)",
     "AND created_at <= %(before_created_at)s AND id < %(before_id)s"),
]}
