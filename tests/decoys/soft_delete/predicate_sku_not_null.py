"""The partial unique index's predicate adds `AND sku IS NOT NULL` ("NULL SKUs need no
uniqueness"). sku is NOT NULL, so it enforces exactly the same rows, but ON CONFLICT inference
does not use column NOT NULLs: the upsert every feed must now write, ON CONFLICT (sku) WHERE
deleted_at IS NULL, no longer finds an arbiter and fails with 42P10 (no unique or exclusion
constraint matching the ON CONFLICT specification): every vendor-feed load stops."""
CHECK = "soft_delete.q1"
EXPECT = "ON CONFLICT inference"
EDIT = {"soft_delete_sql": [("ON products (sku) WHERE deleted_at IS NULL;",
                             "ON products (sku) WHERE deleted_at IS NULL AND sku IS NOT NULL;")]}
