"""Bulk upsert without deduplicating the batch: a feed that carries one sku twice makes
PostgreSQL refuse with 21000 `ON CONFLICT DO UPDATE command cannot affect row a second
time`."""
CHECK = "upserts.q3"
EXPECT = 'cannot affect row a second time'  # the verdict must give this reason
REPLACE = {"load_feed": '''
import json

from labs import feeds


def load_feed(conn, events):
    rejected = [(i, feeds.problem(e)) for i, e in enumerate(events) if feeds.problem(e)]
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
            SELECT * FROM feed_batch
            ON CONFLICT (sku) DO UPDATE
               SET name = EXCLUDED.name, category = EXCLUDED.category, vendor = EXCLUDED.vendor,
                   price = EXCLUDED.price, attributes = EXCLUDED.attributes,
                   version = EXCLUDED.version, updated_at = EXCLUDED.updated_at
             WHERE EXCLUDED.version > p.version""")
        applied = cur.rowcount
    conn.commit()
    return {"applied": applied, "stale": len(valid) - applied, "rejected": rejected}
'''}
