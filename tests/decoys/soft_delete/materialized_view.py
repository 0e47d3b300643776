"""Makes active_products a materialized view: right when it is made, then stale; a product
soft-deleted afterwards is still listed, a re-listed one is missing."""
CHECK = "soft_delete.q1"
EXPECT = "soft-deleted after your statements ran"  # the verdict must give this reason
EDIT = {"soft_delete_sql": [("CREATE OR REPLACE VIEW active_products AS",
                             "CREATE MATERIALIZED VIEW IF NOT EXISTS active_products AS")]}
