"""Makes check-then-insert safe with LOCK TABLE products IN SHARE ROW EXCLUSIVE MODE:
no duplicate, no 23505, right actions, but every upsert blocks every other writer of
products (orders, stock, prices) until it commits."""
CHECK = "upserts.q1"
EXPECT = "had to wait for it"
REPLACE = {"upsert_product": '''
from psycopg.types.json import Jsonb


def upsert_product(conn, event):
    params = dict(event, attributes=Jsonb(event["attributes"]))
    conn.execute("LOCK TABLE products IN SHARE ROW EXCLUSIVE MODE")  # no race any more
    found = conn.execute("SELECT id, version FROM products WHERE sku = %(sku)s", params).fetchone()
    if found is None:
        pid = conn.execute("""
            INSERT INTO products (sku, name, category, vendor, price, attributes, version, updated_at)
            VALUES (%(sku)s, %(name)s, %(category)s, %(vendor)s, %(price)s, %(attributes)s,
                    %(version)s, %(updated_at)s) RETURNING id""", params).fetchone()[0]
        conn.commit()
        return pid, "inserted"
    pid, version = found
    if int(event["version"]) <= version:
        conn.commit()
        return pid, "stale"
    conn.execute("""
        UPDATE products SET name = %(name)s, category = %(category)s, vendor = %(vendor)s,
               price = %(price)s, attributes = %(attributes)s, version = %(version)s,
               updated_at = %(updated_at)s
        WHERE id = %(id)s""", dict(params, id=pid))
    conn.commit()
    return pid, "updated"
'''}
