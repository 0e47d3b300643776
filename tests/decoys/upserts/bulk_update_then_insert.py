"""Classic two-step bulk upsert: UPDATE the existing skus from the staging table, then INSERT the
new ones with ON CONFLICT DO NOTHING. Sequentially right; but when another load inserts one of
the batch's new skus (with an older version) between this load's UPDATE and its INSERT, the
UPDATE saw no row and the INSERT does nothing: this load's newer version is silently lost
(counted stale)."""
CHECK = "upserts.q3"
EXPECT = "the newer version was lost"
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
                price numeric(10,2), attributes jsonb, version int, updated_at timestamptz)
            ON COMMIT DROP""")
        with cur.copy("COPY feed_batch FROM STDIN") as copy:
            for e in valid:
                attributes = e["attributes"]
                copy.write_row((e["sku"], e["name"], e["category"], e["vendor"], e["price"],
                                attributes if isinstance(attributes, str) else json.dumps(attributes),
                                int(e["version"]), e["updated_at"]))
        cur.execute("""
            CREATE TEMP TABLE feed_newest ON COMMIT DROP AS
            SELECT DISTINCT ON (sku) * FROM feed_batch ORDER BY sku, version DESC""")
        cur.execute("""
            UPDATE products p
               SET name = b.name, category = b.category, vendor = b.vendor, price = b.price,
                   attributes = b.attributes, version = b.version, updated_at = b.updated_at
              FROM feed_newest b
             WHERE p.sku = b.sku AND b.version > p.version""")
        updated = cur.rowcount
        cur.execute("""
            INSERT INTO products (sku, name, category, vendor, price, attributes, version, updated_at)
            SELECT sku, name, category, vendor, price, attributes, version, updated_at
            FROM feed_newest ORDER BY sku
            ON CONFLICT (sku) DO NOTHING""")
        applied = updated + cur.rowcount
    conn.commit()
    return {"applied": applied, "stale": len(valid) - applied, "rejected": rejected}
'''}
