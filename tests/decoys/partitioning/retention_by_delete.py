"""Retention by DELETE: the right rows are left, but every old row became a dead tuple (WAL for
each, VACUUM's work, files as large as before), and the emptied partitions stay attached."""
CHECK = "partitioning.q4"
EXPECT = "DELETE"
REPLACE = {"drop_months_before": '''def drop_months_before(conn, cutoff):
    with conn.transaction():
        conn.execute("DELETE FROM orders WHERE created_at < %s", [cutoff])
    return 0
'''}
