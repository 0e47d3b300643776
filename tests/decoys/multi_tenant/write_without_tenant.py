"""WITH CHECK also lets a connection with no tenant set write ("background jobs do not set
one"): any request or job that forgets the tenant can insert customers and orders for any
tenant. Reads stay empty without a tenant, so only a write without one shows it."""
CHECK = "multi_tenant.q1"
EXPECT = "no writes either"
EDIT = {"policies_sql": [("WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::int);\n\nALTER TABLE orders",
  "WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::int OR nullif(current_setting('app.tenant_id', true), '')::int IS NULL);\n\nALTER TABLE orders"),
  ("WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::int);\n\nALTER TABLE order_items",
  "WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::int OR nullif(current_setting('app.tenant_id', true), '')::int IS NULL);\n\nALTER TABLE order_items")]}
