"""Claims the key correctly, but computes the new price in Python from a read
(read-modify-write): two requests with different keys on the same sku lose one change."""
CHECK = "upserts.q2"
EXPECT = "one change was lost"
REPLACE = {"handle_request": '''
from decimal import Decimal

from psycopg.types.json import Jsonb


def handle_request(conn, key, request):
    owned = conn.execute(
        "INSERT INTO idempotency_keys (key, request) VALUES (%s, %s) "
        "ON CONFLICT (key) DO NOTHING RETURNING key", [key, Jsonb(request)]).fetchone()
    if owned is None:
        stored, response = conn.execute(
            "SELECT request, response FROM idempotency_keys WHERE key = %s", [key]).fetchone()
        conn.rollback()
        if stored != request:
            raise ValueError(f"idempotency key {key!r} was used for another request")
        return response
    price, version = conn.execute("SELECT price, version FROM products WHERE sku = %s",
                                  [request["sku"]]).fetchone()
    new_price = price + Decimal(request["price_change"])
    conn.execute("UPDATE products SET price = %s, version = %s, updated_at = now() WHERE sku = %s",
                 [new_price, version + 1, request["sku"]])
    response = {"sku": request["sku"], "price": str(new_price), "version": version + 1}
    conn.execute("UPDATE idempotency_keys SET response = %s WHERE key = %s", [Jsonb(response), key])
    conn.commit()
    return response
'''}
