"""Policy compares as text (tenant_id::text = setting): isolation holds, but no index on tenant_id can
serve it: every tenant query reads all tenants' rows."""
CHECK = "multi_tenant.q1"
EXPECT = "cannot use an index"
EDIT = {"policies_sql": [("tenant_id = nullif(current_setting('app.tenant_id', true), '')::int",
                          "tenant_id::text = current_setting('app.tenant_id', true)")]}
