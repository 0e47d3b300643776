"""Stages the feed as text (a text-only temp table, cast on the way out) and picks the
newest event per sku with ORDER BY sku, version DESC on the *text* version: '9' sorts
above '10', so once a sku passes version 9 the batch keeps an older event."""
CHECK = "upserts.q3"
EXPECT = "compared as text"
REPLACE = {"load_feed": '''
import json

from labs import feeds
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
    with conn.cursor() as cur:
        cur.execute("""
            CREATE TEMP TABLE feed_batch (sku text, name text, category text, vendor text,
                price text, attributes text, version text, updated_at text) ON COMMIT DROP""")
        with cur.copy("COPY feed_batch FROM STDIN") as copy:
            for e in valid:
                a = e["attributes"]
                copy.write_row((e["sku"], e["name"], e["category"], e["vendor"], str(e["price"]),
                                a if isinstance(a, str) else json.dumps(a), str(e["version"]),
                                e["updated_at"]))
        cur.execute("""
            WITH latest AS (
                SELECT DISTINCT ON (sku) * FROM feed_batch ORDER BY sku, version DESC)
            INSERT INTO products AS p (sku, name, category, vendor, price, attributes, version,
                                       updated_at)
            SELECT sku, name, category, vendor, price::numeric, attributes::jsonb, version::int,
                   updated_at::timestamptz
            FROM latest ORDER BY sku
            ON CONFLICT (sku) DO UPDATE
               SET name = EXCLUDED.name, category = EXCLUDED.category, vendor = EXCLUDED.vendor,
                   price = EXCLUDED.price, attributes = EXCLUDED.attributes,
                   version = EXCLUDED.version, updated_at = EXCLUDED.updated_at
             WHERE EXCLUDED.version > p.version""")
        applied = cur.rowcount
    conn.commit()
    return {"applied": applied, "stale": len(valid) - applied, "rejected": rejected}
'''}
