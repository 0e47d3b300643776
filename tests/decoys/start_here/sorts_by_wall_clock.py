"""Sorts by the session's local wall-clock time: in the hour repeated when the clocks go back,
a later sign-up sorts before an earlier one."""
CHECK = "start_here.q1"
EXPECT = "wall-clock order"  # the verdict must give this reason
EDIT = {"newest_sql": [("ORDER BY created_at DESC, id DESC", "ORDER BY created_at::timestamp DESC, id DESC")]}
