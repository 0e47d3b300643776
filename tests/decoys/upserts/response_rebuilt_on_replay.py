"""Stores only the key and the request, not the response: a replay answers with the product as
it is NOW. Once any other request changed the price, a replay of an old key returns a different
response (another price and version) than the first call got: the client sees its retry
"succeed" with numbers its request never produced."""
CHECK = "upserts.q2"
EXPECT = "answers with the product as it is now"
REPLACE = {"handle_request": '''def handle_request(conn, key, request):
    owned = conn.execute(
        "INSERT INTO idempotency_keys (key, request, response) VALUES (%s, %s, '{}') "
        "ON CONFLICT (key) DO NOTHING RETURNING key", [key, Jsonb(request)]).fetchone()
    if owned is None:
        (stored,) = conn.execute("SELECT request FROM idempotency_keys WHERE key = %s",
                                 [key]).fetchone()
        if stored != request:
            conn.rollback()
            raise ValueError(f"idempotency key {key!r} was used for another request")
    else:
        conn.execute("UPDATE products SET price = price + %s, version = version + 1, "
                     "updated_at = now() WHERE sku = %s", [request["price_change"], request["sku"]])
    (response,) = conn.execute(
        "SELECT jsonb_build_object('sku', sku, 'price', price::text, 'version', version) "
        "FROM products WHERE sku = %s", [request["sku"]]).fetchone()
    conn.commit()
    return response
'''}
