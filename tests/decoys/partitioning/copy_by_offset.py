"""Pages the copy with OFFSET instead of a keyset: each batch re-reads every row before it (a
conversion of ten million rows in batches of 5,000 reads 10^10 rows), and when the shop deletes
an order already copied, every later row moves up one place and the next batch skips one."""
CHECK = "partitioning.q2"
EXPECT = "OFFSET"
EDIT = {"convert_orders": [(
    '''    last_id = 0
    while True:  # one committed transaction per batch, keyset on id
        with conn.transaction():
            copied, top = conn.execute("""
                WITH batch AS (INSERT INTO orders_new
                               SELECT * FROM orders WHERE id > %s ORDER BY id LIMIT %s
                               RETURNING id)
                SELECT count(*), max(id) FROM batch""", [last_id, batch_size]).fetchone()
        if copied == 0:
            break
        last_id = top''', '''    last_id, offset = 0, 0
    while True:  # one committed transaction per batch, paged with OFFSET
        with conn.transaction():
            copied, top = conn.execute("""
                WITH batch AS (INSERT INTO orders_new
                               SELECT * FROM orders ORDER BY id OFFSET %s LIMIT %s
                               RETURNING id)
                SELECT count(*), max(id) FROM batch""", [offset, batch_size]).fetchone()
        if copied == 0:
            break
        offset += copied
        last_id = max(last_id, top)''')]}
