"""Per-command policies for SELECT, INSERT and UPDATE, none for DELETE: every cross-tenant
attempt is refused, but the tenant's own DELETEs affect 0 rows without an error (a removed
order line, a customer's erasure never happen)."""
CHECK = "multi_tenant.q1"
EXPECT = "DELETE of its own"
REPLACE = {"policies_sql": '''policies_sql = """
ALTER TABLE customers ENABLE ROW LEVEL SECURITY;
ALTER TABLE customers FORCE ROW LEVEL SECURITY;
ALTER TABLE orders ENABLE ROW LEVEL SECURITY;
ALTER TABLE orders FORCE ROW LEVEL SECURITY;
ALTER TABLE order_items ENABLE ROW LEVEL SECURITY;
ALTER TABLE order_items FORCE ROW LEVEL SECURITY;
CREATE POLICY t_sel ON customers FOR SELECT USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::int);
CREATE POLICY t_ins ON customers FOR INSERT WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::int);
CREATE POLICY t_upd ON customers FOR UPDATE USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::int) WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::int);
CREATE POLICY t_sel ON orders FOR SELECT USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::int);
CREATE POLICY t_ins ON orders FOR INSERT WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::int);
CREATE POLICY t_upd ON orders FOR UPDATE USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::int) WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::int);
CREATE POLICY t_sel ON order_items FOR SELECT USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::int);
CREATE POLICY t_ins ON order_items FOR INSERT WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::int);
CREATE POLICY t_upd ON order_items FOR UPDATE USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::int) WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::int);
"""
'''}
