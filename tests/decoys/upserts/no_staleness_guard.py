"""ON CONFLICT DO UPDATE without `WHERE EXCLUDED.version > products.version`: an
out-of-order (older) event overwrites a newer row."""
CHECK = "upserts.q1"
EXPECT = 'not newer than the stored row'  # the verdict must give this reason
REPLACE = {"upsert_product": '''
from psycopg.types.json import Jsonb


def upsert_product(conn, event):
    pid, inserted = conn.execute("""
        INSERT INTO products AS p (sku, name, category, vendor, price, attributes, version, updated_at)
        VALUES (%(sku)s, %(name)s, %(category)s, %(vendor)s, %(price)s, %(attributes)s,
                %(version)s, %(updated_at)s)
        ON CONFLICT (sku) DO UPDATE
           SET name = EXCLUDED.name, category = EXCLUDED.category, vendor = EXCLUDED.vendor,
               price = EXCLUDED.price, attributes = EXCLUDED.attributes,
               version = EXCLUDED.version, updated_at = EXCLUDED.updated_at
        RETURNING id, (xmax = 0)""", dict(event, attributes=Jsonb(event["attributes"]))).fetchone()
    conn.commit()
    return pid, "inserted" if inserted else "updated"
'''}
