"""Policies enabled but not forced: tested as the table owner (the role migrations and jobs run
as), every tenant's rows are there, because the owner is exempt from its own table's policies
unless FORCE ROW LEVEL SECURITY is set."""
CHECK = "multi_tenant.q1"
EXPECT = "FORCE ROW LEVEL SECURITY"
EDIT = {"policies_sql": [
    ("ALTER TABLE customers FORCE ROW LEVEL SECURITY;", ""),
    ("ALTER TABLE orders FORCE ROW LEVEL SECURITY;", ""),
    ("ALTER TABLE order_items FORCE ROW LEVEL SECURITY;", ""),
]}
