"""orders and order_items isolated for reads and writes, but customers' policy has WITH CHECK
(true) ("sign-up creates customers for any shop"): a tenant can create customers in another
tenant, or move its own there."""
CHECK = "multi_tenant.q1"
EXPECT = "WITH CHECK"
EDIT = {"policies_sql": [("""CREATE POLICY tenant_isolation ON customers
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::int)
    WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::int);""",
                          """CREATE POLICY tenant_isolation ON customers
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::int)
    WITH CHECK (true);""")]}
