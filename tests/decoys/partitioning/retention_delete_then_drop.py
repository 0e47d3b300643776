"""DELETE every old order first, then detach and drop the emptied partitions: the end state is
right, but the DELETE wrote a dead tuple and WAL for every old row, the cost that retention by
partition exists to avoid."""
CHECK = "partitioning.q4"
EXPECT = "row by row"
REPLACE = {"drop_months_before": '''def drop_months_before(conn, cutoff):
    with conn.transaction():
        conn.execute("DELETE FROM orders WHERE created_at < %s", [cutoff])
    old = [p for p in pt.partition_bounds(conn, "orders")
           if not p.is_default and p.upper is not None and p.upper <= cutoff]
    conn.rollback()
    for part in old:
        with conn.transaction():
            conn.execute("SET LOCAL lock_timeout = '2s'")
            conn.execute(f"ALTER TABLE orders DETACH PARTITION {part.name}")
            conn.execute(f"DROP TABLE {part.name}")
    return len(old)
'''}
