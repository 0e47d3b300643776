"""Creates the months but no default partition: an order dated outside them (an import of old
orders, a month not created in time) is refused with 'no partition of relation found for row'."""
CHECK = "partitioning.q1"
EXPECT = "default partition"
EDIT = {"create_month_partitions": [
    ('        conn.execute(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT")\n', ""),
]}
