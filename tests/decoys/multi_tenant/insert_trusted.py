"""Reads filtered by tenant, but writes trusted to the application ("it sets tenant_id
itself"): a FOR INSERT policy WITH CHECK (true) lets a tenant insert another tenant's order."""
CHECK = "multi_tenant.q1"
EXPECT = "WITH CHECK"
REPLACE = {"policies_sql": '''policies_sql = """
ALTER TABLE customers ENABLE ROW LEVEL SECURITY;
ALTER TABLE customers FORCE ROW LEVEL SECURITY;
ALTER TABLE orders ENABLE ROW LEVEL SECURITY;
ALTER TABLE orders FORCE ROW LEVEL SECURITY;
ALTER TABLE order_items ENABLE ROW LEVEL SECURITY;
ALTER TABLE order_items FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_read ON customers FOR SELECT
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::int);
CREATE POLICY tenant_write ON customers FOR INSERT WITH CHECK (true);
CREATE POLICY tenant_change ON customers FOR UPDATE
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::int);
CREATE POLICY tenant_read ON orders FOR SELECT
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::int);
CREATE POLICY tenant_write ON orders FOR INSERT WITH CHECK (true);
CREATE POLICY tenant_change ON orders FOR UPDATE
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::int);
CREATE POLICY tenant_read ON order_items FOR SELECT
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::int);
CREATE POLICY tenant_write ON order_items FOR INSERT WITH CHECK (true);
CREATE POLICY tenant_change ON order_items FOR UPDATE
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::int);
"""
'''}
