"""Check-then-insert made race-free with a global transaction-level advisory lock: right ids and
actions, no 23505, no table lock (plain writers of products pass), but every upsert of every sku
waits for every other: 8 feed workers run one at a time, and one slow caller transaction stalls
all upserts."""
CHECK = "upserts.q1"
EXPECT = "serialises every call"
REPLACE = {"upsert_product": '''
from psycopg.types.json import Jsonb


def upsert_product(conn, event):
    params = dict(event, attributes=Jsonb(event["attributes"]))
    conn.execute("SELECT pg_advisory_xact_lock(6006)")  # one upsert at a time: no race
    found = conn.execute("SELECT id, version FROM products WHERE sku = %(sku)s", params).fetchone()
    if found is None:
        (pid,) = conn.execute("""
            INSERT INTO products (sku, name, category, vendor, price, attributes, version, updated_at)
            VALUES (%(sku)s, %(name)s, %(category)s, %(vendor)s, %(price)s, %(attributes)s,
                    %(version)s, %(updated_at)s) RETURNING id""", params).fetchone()
        conn.commit()
        return pid, "inserted"
    pid, stored = found
    if int(event["version"]) > stored:
        conn.execute("""
            UPDATE products SET name = %(name)s, category = %(category)s, vendor = %(vendor)s,
                   price = %(price)s, attributes = %(attributes)s, version = %(version)s,
                   updated_at = %(updated_at)s WHERE id = %(id)s""", dict(params, id=pid))
        conn.commit()
        return pid, "updated"
    conn.commit()
    return pid, "stale"
'''}
