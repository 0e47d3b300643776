"""Session-level set_config, committed, and RESET only when the work succeeds: a failed request leaves its tenant on the pooled connection, and the next request sees that tenant's rows."""
CHECK = "multi_tenant.q3"
EXPECT = "After a failed request"
EDIT = {"run_as_tenant": [("""        with conn.transaction():  # a transaction even in autocommit: SET LOCAL lives in it
            conn.execute("SELECT set_config('app.tenant_id', %s, true)", [str(tenant_id)])
            return work(conn)""", """        conn.execute("SELECT set_config('app.tenant_id', %s, false)", [str(tenant_id)])
        conn.commit()
        result = work(conn)
        conn.execute("RESET app.tenant_id")
        conn.commit()
        return result""")]}
