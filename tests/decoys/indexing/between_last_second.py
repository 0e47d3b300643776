"""BETWEEN the day and 23:59:59: misses an order placed at 23:59:59.5."""
CHECK = "indexing.q7"
EXPECT = 'every edge of the day'  # the verdict must give this reason
EDIT = {"by_day_sql": [("WHERE created_at >= '2026-03-02' AND created_at < date '2026-03-02' + 1",
                        "WHERE created_at BETWEEN '2026-03-02' AND timestamptz '2026-03-02' + interval '23:59:59'")]}
