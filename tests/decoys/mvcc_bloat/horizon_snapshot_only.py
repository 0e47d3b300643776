"""Counts only sessions with a snapshot (backend_xmin). A READ COMMITTED session that wrote and
then idles in its transaction has no snapshot between statements, but its transaction id
(backend_xid) holds the horizon: it is missed."""
CHECK = "mvcc_bloat.q2"
EXPECT = "backend_xid"
EDIT = {"find_horizon_holders": [
    ("AND (backend_xmin IS NOT NULL OR backend_xid IS NOT NULL)", "AND backend_xmin IS NOT NULL"),
    ("greatest(age(backend_xmin), age(backend_xid))", "age(backend_xmin)")]}
