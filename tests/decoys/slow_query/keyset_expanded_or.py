"""Keyset written in the expanded OR form, created_at < c OR (created_at = c AND id < i): the right rows, but it is a Filter, not an Index Cond, so a page N pages deep re-reads the N*20 newer orders (OFFSET's cost); the first page cannot show it."""
CHECK = "slow_query.q4"
EXPECT = ("re-reads all newer orders", "order_items with a Seq Scan")  # no Index Cond: all its orders
EDIT = {"page_sql": [
    ("AND (created_at, id) < (%(before_created_at)s, %(before_id)s)",
     "AND (created_at < %(before_created_at)s\n"
     "           OR (created_at = %(before_created_at)s AND id < %(before_id)s))"),
]}
