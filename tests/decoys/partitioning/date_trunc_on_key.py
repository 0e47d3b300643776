"""Filters with date_trunc('month', created_at) = %(month)s: a function of the partition key, so
the planner cannot prune (every month is scanned), and date_trunc works in the session's
TimeZone, so outside UTC the "month" is the wrong one too."""
CHECK = "partitioning.q3"
EXPECT = "pruning"
EDIT = {"month_orders_sql": [(
    """WHERE created_at >= %(month)s
  AND created_at < ((%(month)s::timestamptz AT TIME ZONE 'UTC') + interval '1 month')
                   AT TIME ZONE 'UTC'""",
    "WHERE date_trunc('month', created_at) = %(month)s")]}
