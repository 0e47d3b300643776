"""Looks for holders among sessions whose state is 'active' only: the forgotten BEGIN in a psql
window is 'idle in transaction', runs nothing, and holds the horizon all the same."""
CHECK = "mvcc_bloat.q2"
EXPECT = "idle in transaction"
EDIT = {"find_horizon_holders": [
    ("AND (backend_xmin IS NOT NULL OR backend_xid IS NOT NULL)", "AND state = 'active'")]}
