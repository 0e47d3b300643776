"""Every request's transaction rolled back ("so nothing stays on the pooled connection"): the tenant
setting is gone afterwards, and so is every row the request wrote."""
CHECK = "multi_tenant.q3"
EXPECT = "not committed"
EDIT = {"run_as_tenant": [("with conn.transaction():", "with conn.transaction(force_rollback=True):")]}
