"""Locks the product with SELECT ... FOR UPDATE NOWAIT before the guarded UPDATE "so a restore
never waits": it ignores the caller's lock_timeout budget and fails with 55P03 whenever anyone
holds the row for a millisecond (a price feed's UPDATE, the second click of a double-click gets
an error instead of False)."""
CHECK = "soft_delete.q2"
EXPECT = "budget was spent"
EDIT = {"restore_product": [("""    try:
        restored = conn.execute(""", """    try:
        conn.execute("SELECT 1 FROM products WHERE id = %s FOR UPDATE NOWAIT", [product_id])
        restored = conn.execute(""")]}
