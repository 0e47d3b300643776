"""Sorts by created_at rounded to the second (`::timestamptz(0)`): customers who signed up
within the same second, microseconds apart, are then ordered by id, not by time. It passed
while the planted instants happened to round to different seconds."""
CHECK = "start_here.q1"
EXPECT = "newest first only to the second"  # the verdict must give this reason
EDIT = {"newest_sql": [("ORDER BY created_at DESC, id DESC",
                        "ORDER BY created_at::timestamptz(0) DESC, id DESC")]}
