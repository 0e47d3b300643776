"""A plain view, created by the superuser: it reads orders with its owner's rights, which bypass
row-level security, so every tenant sees every tenant's customers through it."""
CHECK = "multi_tenant.q2"
EXPECT = "security_invoker"
EDIT = {"view_sql": [("CREATE VIEW tenant_revenue WITH (security_invoker = true) AS",
                      "CREATE VIEW tenant_revenue AS")]}
