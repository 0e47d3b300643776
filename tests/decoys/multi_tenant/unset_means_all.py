"""current_setting('app.tenant_id') without missing_ok raised on connections that never set a
tenant, and the "fix" made a missing tenant mean every tenant: coalesce(setting, tenant_id).
Admin scripts and background jobs that forget the tenant then read everything."""
CHECK = "multi_tenant.q1"
EXPECT = "no tenant set"
EDIT = {"policies_sql": [
    ("nullif(current_setting('app.tenant_id', true), '')::int",
     "coalesce(nullif(current_setting('app.tenant_id', true), '')::int, tenant_id)"),
]}
