"""Forgets to set the new identity's sequence past the copied ids: LIKE … INCLUDING IDENTITY
creates a new sequence starting at 1, and since the primary key is (id, created_at) nothing stops
the next order from getting an id an old order already has."""
CHECK = "partitioning.q2"
EXPECT = "already have"
EDIT = {"convert_orders": [(
    "        conn.execute(\"SELECT setval(pg_get_serial_sequence('orders', 'id'), \"\n"
    "                     \"(SELECT max(id) FROM orders))\")\n", "")]}
