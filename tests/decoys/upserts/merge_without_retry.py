"""MERGE (PostgreSQL 15) without a retry: two sessions that both see no row both take
the NOT MATCHED branch; the second's INSERT fails with 23505 `duplicate key value
violates unique constraint "products_sku_key"`, and the error reaches the caller."""
CHECK = "upserts.q1"
EXPECT = 'two sessions inserted the same key'  # the verdict must give this reason
REPLACE = {"upsert_product": '''
from psycopg.types.json import Jsonb


def upsert_product(conn, event):
    params = dict(event, attributes=Jsonb(event["attributes"]))
    before = conn.execute("SELECT id FROM products WHERE sku = %(sku)s", params).fetchone()
    merged = conn.execute("""
        MERGE INTO products AS p
        USING (SELECT %(sku)s AS sku, %(name)s AS name, %(category)s AS category,
                      %(vendor)s AS vendor, %(price)s::numeric AS price,
                      %(attributes)s::jsonb AS attributes, %(version)s::int AS version,
                      %(updated_at)s::timestamptz AS updated_at) AS e
        ON p.sku = e.sku
        WHEN MATCHED AND e.version > p.version THEN
            UPDATE SET name = e.name, category = e.category, vendor = e.vendor, price = e.price,
                       attributes = e.attributes, version = e.version, updated_at = e.updated_at
        WHEN NOT MATCHED THEN
            INSERT (sku, name, category, vendor, price, attributes, version, updated_at)
            VALUES (e.sku, e.name, e.category, e.vendor, e.price, e.attributes, e.version,
                    e.updated_at)""", params).rowcount
    pid = conn.execute("SELECT id FROM products WHERE sku = %(sku)s", params).fetchone()[0]
    conn.commit()
    if not merged:
        return pid, "stale"
    return pid, "updated" if before else "inserted"
'''}
