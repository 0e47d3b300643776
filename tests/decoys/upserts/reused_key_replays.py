"""Claims the key first and replays the stored response, but never compares the request:
a key reused for a different request silently gets the first request's response."""
CHECK = "upserts.q2"
EXPECT = 'different request'  # the verdict must give this reason
REPLACE = {"handle_request": '''
from psycopg.types.json import Jsonb


def handle_request(conn, key, request):
    owned = conn.execute(
        "INSERT INTO idempotency_keys (key, request) VALUES (%s, %s) "
        "ON CONFLICT (key) DO NOTHING RETURNING key", [key, Jsonb(request)]).fetchone()
    if owned is None:
        (response,) = conn.execute("SELECT response FROM idempotency_keys WHERE key = %s",
                                   [key]).fetchone()
        conn.commit()
        return response
    (response,) = conn.execute("""
        WITH changed AS (
            UPDATE products SET price = price + %(change)s, version = version + 1,
                                updated_at = now()
            WHERE sku = %(sku)s
            RETURNING jsonb_build_object('sku', sku, 'price', price::text,
                                         'version', version) AS response)
        UPDATE idempotency_keys k SET response = (SELECT response FROM changed)
        WHERE k.key = %(key)s
        RETURNING k.response
    """, {"change": request["price_change"], "sku": request["sku"], "key": key}).fetchone()
    conn.commit()
    return response
'''}
