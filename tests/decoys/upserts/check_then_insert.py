"""Check-then-insert: SELECT the sku, INSERT when absent. Two sessions that both find
nothing both insert; the unique index makes the loser fail with 23505."""
CHECK = "upserts.q1"
EXPECT = 'two sessions inserted the same key'  # the verdict must give this reason
REPLACE = {"upsert_product": '''
from psycopg.types.json import Jsonb


def upsert_product(conn, event):
    found = conn.execute("SELECT id, version FROM products WHERE sku = %s",
                         [event["sku"]]).fetchone()
    params = dict(event, attributes=Jsonb(event["attributes"]))
    if found is None:
        pid = conn.execute("""
            INSERT INTO products (sku, name, category, vendor, price, attributes, version, updated_at)
            VALUES (%(sku)s, %(name)s, %(category)s, %(vendor)s, %(price)s, %(attributes)s,
                    %(version)s, %(updated_at)s) RETURNING id""", params).fetchone()[0]
        conn.commit()
        return pid, "inserted"
    pid, version = found
    if event["version"] <= version:
        conn.commit()
        return pid, "stale"
    conn.execute("""
        UPDATE products SET name = %(name)s, category = %(category)s, vendor = %(vendor)s,
               price = %(price)s, attributes = %(attributes)s, version = %(version)s,
               updated_at = %(updated_at)s
        WHERE sku = %(sku)s AND version < %(version)s""", params)
    conn.commit()
    return pid, "updated"
'''}
