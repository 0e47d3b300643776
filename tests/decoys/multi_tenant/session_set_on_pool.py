"""Sets the tenant for the session (plain SET, as set_config(..., false)): the setting stays on
the pooled connection and the next request, which sets no tenant, reads the previous tenant's
rows."""
CHECK = "multi_tenant.q3"
EXPECT = "stays on the connection"
REPLACE = {"run_as_tenant": '''def run_as_tenant(pool, tenant_id, work):
    with pool.connection() as conn:
        conn.execute("SELECT set_config('app.tenant_id', %s, false)", [str(tenant_id)])
        return work(conn)
'''}
