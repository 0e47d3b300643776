"""Skips malformed rows without reporting them: the loader's numbers add up, but a vendor
never learns which of its rows were thrown away."""
CHECK = "upserts.q3"
EXPECT = 'never drop one silently'  # the verdict must give this reason
REPLACE = {"load_feed": '''
import json

from labs import feeds


def load_feed(conn, events):
    valid = [e for e in events if not feeds.problem(e)]
    with conn.cursor() as cur:
        cur.execute("""CREATE TEMP TABLE feed_batch (sku text, name text, category text,
            vendor text, price numeric(10,2), attributes jsonb, version int,
            updated_at timestamptz) ON COMMIT DROP""")
        with cur.copy("COPY feed_batch FROM STDIN") as copy:
            for e in valid:
                copy.write_row((e["sku"], e["name"], e["category"], e["vendor"], e["price"],
                                json.dumps(e["attributes"]), int(e["version"]), e["updated_at"]))
        cur.execute("""
            INSERT INTO products AS p (sku, name, category, vendor, price, attributes, version,
                                       updated_at)
            SELECT DISTINCT ON (sku) * FROM feed_batch ORDER BY sku, version DESC
            ON CONFLICT (sku) DO UPDATE
               SET name = EXCLUDED.name, category = EXCLUDED.category, vendor = EXCLUDED.vendor,
                   price = EXCLUDED.price, attributes = EXCLUDED.attributes,
                   version = EXCLUDED.version, updated_at = EXCLUDED.updated_at
             WHERE EXCLUDED.version > p.version""")
        applied = cur.rowcount
    conn.commit()
    return {"applied": applied, "stale": len(valid) - applied, "rejected": []}
'''}
