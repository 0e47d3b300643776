"""xid_age is the age of the transaction id when the session has one, else of its snapshot:
a REPEATABLE READ session that took its snapshot long before it wrote holds the horizon at its
xmin, which is older; the on-call engineer is told it is younger than it is."""
CHECK = "mvcc_bloat.q2"
EXPECT = "not coalesce"
EDIT = {"find_horizon_holders": [
    ("greatest(age(backend_xmin), age(backend_xid))", "coalesce(age(backend_xid), age(backend_xmin))")]}
