"""Commits every 1,000 valid events 'to keep transactions short': a feed larger than that is
applied in several transactions. A failure in the third chunk leaves the first two committed
while the caller sees an exception; a retry then counts them stale; an sku superseded across
chunks is counted applied twice. The check's feeds are smaller than one chunk."""
CHECK = "upserts.q3"
EXPECT = "all or nothing"
REPLACE = {"load_feed": '''
import json

from labs import feeds
from labs.stress import retry

CHUNK = 1000


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
    for start in range(0, len(valid), CHUNK):
        chunk = valid[start:start + CHUNK]
        with conn.cursor() as cur:
            cur.execute("""
                CREATE TEMP TABLE feed_batch (sku text, name text, category text, vendor text,
                    price numeric(10,2), attributes jsonb, version int, updated_at timestamptz)
                ON COMMIT DROP""")
            with cur.copy("COPY feed_batch FROM STDIN") as copy:
                for e in chunk:
                    attributes = e["attributes"]
                    copy.write_row((e["sku"], e["name"], e["category"], e["vendor"], e["price"],
                                    attributes if isinstance(attributes, str) else json.dumps(attributes),
                                    int(e["version"]), e["updated_at"]))
            cur.execute("""
                INSERT INTO products AS p (sku, name, category, vendor, price, attributes, version,
                                           updated_at)
                SELECT DISTINCT ON (sku) sku, name, category, vendor, price, attributes, version,
                       updated_at
                FROM feed_batch
                ORDER BY sku, version DESC
                ON CONFLICT (sku) DO UPDATE
                   SET name = EXCLUDED.name, category = EXCLUDED.category, vendor = EXCLUDED.vendor,
                       price = EXCLUDED.price, attributes = EXCLUDED.attributes,
                       version = EXCLUDED.version, updated_at = EXCLUDED.updated_at
                 WHERE EXCLUDED.version > p.version""")
            applied += cur.rowcount
        conn.commit()  # one chunk at a time: short transactions
    return {"applied": applied, "stale": len(valid) - applied, "rejected": rejected}
'''}
