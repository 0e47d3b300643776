"""Looks the idempotency key up first and records it after the work: two racing replays
both miss the key and both apply the price change."""
CHECK = "upserts.q2"
EXPECT = 'both did the work'  # the verdict must give this reason
REPLACE = {"handle_request": '''
from psycopg.types.json import Jsonb


def handle_request(conn, key, request):
    stored = conn.execute("SELECT response FROM idempotency_keys WHERE key = %s",
                          [key]).fetchone()
    if stored is not None and stored[0] is not None:
        conn.commit()
        return stored[0]
    response = conn.execute("""
        UPDATE products SET price = price + %s, version = version + 1, updated_at = now()
        WHERE sku = %s
        RETURNING jsonb_build_object('sku', sku, 'price', price::text, 'version', version)""",
        [request["price_change"], request["sku"]]).fetchone()[0]
    conn.execute("INSERT INTO idempotency_keys (key, request, response) VALUES (%s, %s, %s) "
                 "ON CONFLICT (key) DO NOTHING", [key, Jsonb(request), Jsonb(response)])
    conn.commit()
    return response
'''}
