"""Loads the feed in chunks of 1,000 events, each deduplicated on its own, in one transaction: a sku whose
versions fall in two chunks is written twice and counted applied twice; statements grow with the feed."""
CHECK = "upserts.q3"
EXPECT = "deduplicates each on its own"
REPLACE = {"load_feed": '''import json

from labs.stress import retry


@retry
def load_feed(conn, events):
    rejected, valid = [], []
    for position, event in enumerate(events):
        reason = feeds.problem(event)
        if reason:
            rejected.append((position, reason))
        else:
            valid.append(event)
    applied = 0
    with conn.cursor() as cur:
        for start in range(0, len(valid), 1000):
            chunk = valid[start:start + 1000]
            cur.execute("""
                INSERT INTO products AS p (sku, name, category, vendor, price, attributes, version,
                                           updated_at)
                SELECT DISTINCT ON (sku) sku, name, category, vendor, price, attributes, version,
                       updated_at
                FROM jsonb_to_recordset(%s::jsonb) AS e(sku text, name text, category text,
                     vendor text, price numeric(10,2), attributes jsonb, version int,
                     updated_at timestamptz)
                ORDER BY sku, version DESC
                ON CONFLICT (sku) DO UPDATE
                   SET name = EXCLUDED.name, category = EXCLUDED.category, vendor = EXCLUDED.vendor,
                       price = EXCLUDED.price, attributes = EXCLUDED.attributes,
                       version = EXCLUDED.version, updated_at = EXCLUDED.updated_at
                 WHERE EXCLUDED.version > p.version""",
                [json.dumps([dict(e, attributes=e["attributes"] if not isinstance(e["attributes"], str) else json.loads(e["attributes"]), version=int(e["version"])) for e in chunk])])
            applied += cur.rowcount
    conn.commit()
    return {"applied": applied, "stale": len(valid) - applied, "rejected": rejected}
'''}
