"""Borrows with pool.getconn() and gives the connection back only when the work succeeds: a
failed request keeps its connection for good, and the pool runs dry (here, a pool of one: the
next request waits and gets nothing)."""
CHECK = "multi_tenant.q3"
EXPECT = "never came back"
REPLACE = {"run_as_tenant": '''def run_as_tenant(pool, tenant_id, work):
    conn = pool.getconn()
    with conn.transaction():
        conn.execute("SELECT set_config('app.tenant_id', %s, true)", [str(tenant_id)])
        result = work(conn)
    pool.putconn(conn)
    return result
'''}
