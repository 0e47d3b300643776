"""Adds LIMIT 1000 'as a safety cap': at tiny scale a day has far fewer orders, at production
scale (~27,000 orders a day) the report silently returns 1,000 of them."""
CHECK = "indexing.q7"
EXPECT = "fixed number of rows"
EDIT = {"by_day_sql": [("created_at < date '2026-03-02' + 1\n", "created_at < date '2026-03-02' + 1\nLIMIT 1000\n")]}
