"""Indexes that contain tenant_id but do not start with it ((created_at, tenant_id), (order_id,
tenant_id)): the policy's tenant_id = ... cannot use them to narrow the scan, and the planner
reads all tenants' rows with a Seq Scan, or (for some tenants, depending on the seed) walks the
whole (created_at, tenant_id) index."""
CHECK = "multi_tenant.q4"
EXPECT = ("Seq Scan", "leads with tenant_id")
REPLACE = {"index_sql": '''index_sql = """
CREATE INDEX customers_tenant_idx ON customers (created_at, tenant_id);
CREATE INDEX orders_tenant_idx ON orders (created_at, tenant_id);
CREATE INDEX order_items_tenant_idx ON order_items (order_id, tenant_id);
"""
'''}
