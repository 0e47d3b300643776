"""The tenant read through a helper function declared IMMUTABLE ("so the planner can use the
index"): the planner evaluates it once, when it plans, so a prepared statement's cached plan
(psycopg prepares a query it has run five times) keeps the first tenant's id, and the next
tenant on that pooled connection reads the first one's rows."""
CHECK = "multi_tenant.q1"
EXPECT = "IMMUTABLE"
REPLACE = {"policies_sql": '''policies_sql = """
CREATE OR REPLACE FUNCTION current_tenant() RETURNS int LANGUAGE sql IMMUTABLE
    AS $$ SELECT nullif(current_setting('app.tenant_id', true), '')::int $$;
ALTER TABLE customers ENABLE ROW LEVEL SECURITY;
ALTER TABLE customers FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON customers
    USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant());
ALTER TABLE orders ENABLE ROW LEVEL SECURITY;
ALTER TABLE orders FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON orders
    USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant());
ALTER TABLE order_items ENABLE ROW LEVEL SECURITY;
ALTER TABLE order_items FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON order_items
    USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant());
"""
'''}
