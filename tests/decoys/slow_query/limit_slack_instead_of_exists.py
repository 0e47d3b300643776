"""Instead of EXISTS, the subquery takes 25 orders "for slack" and the outer query keeps 20: a run of more orders without items than the slack (abandoned or cancelled checkouts) leaves page 1 short."""
CHECK = "slow_query.q4"
EXPECT = "no LIMIT slack"  # the verdict must give this reason
EDIT = {"page_sql": [
    ("      AND EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = orders.id)\n", ""),
    ("    LIMIT 20\n) p", "    LIMIT 25\n) p"),
    ("ORDER BY p.created_at DESC, p.id DESC\n", "ORDER BY p.created_at DESC, p.id DESC\nLIMIT 20\n"),
]}
