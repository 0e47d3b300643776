"""FOR UPDATE SKIP LOCKED: an eligible order that another transaction has locked at that moment (an
unrelated update, a note) is skipped, and the keyset moves past it: the run ends with eligible orders left."""
CHECK = "soft_delete.q3"
EXPECT = "SKIP LOCKED"
EDIT = {"archive_orders": [("ORDER BY id LIMIT %(n)s FOR UPDATE", "ORDER BY id LIMIT %(n)s FOR UPDATE SKIP LOCKED")]}
