"""INSERT … ON CONFLICT DO NOTHING RETURNING id returns no row for the existing sku,
so a replayed or stale event comes back without its id."""
CHECK = "upserts.q1"
EXPECT = 'the id is lost'  # the verdict must give this reason
REPLACE = {"upsert_product": '''
from psycopg.types.json import Jsonb


def upsert_product(conn, event):
    params = dict(event, attributes=Jsonb(event["attributes"]))
    row = conn.execute("""
        INSERT INTO products (sku, name, category, vendor, price, attributes, version, updated_at)
        VALUES (%(sku)s, %(name)s, %(category)s, %(vendor)s, %(price)s, %(attributes)s,
                %(version)s, %(updated_at)s)
        ON CONFLICT (sku) DO NOTHING RETURNING id""", params).fetchone()
    if row is not None:
        conn.commit()
        return row[0], "inserted"
    row = conn.execute("""
        UPDATE products SET name = %(name)s, category = %(category)s, vendor = %(vendor)s,
               price = %(price)s, attributes = %(attributes)s, version = %(version)s,
               updated_at = %(updated_at)s
        WHERE sku = %(sku)s AND version < %(version)s RETURNING id""", params).fetchone()
    conn.commit()
    return (row[0], "updated") if row else (None, "stale")
'''}
