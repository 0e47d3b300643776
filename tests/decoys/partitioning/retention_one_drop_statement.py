"""Detaches each old month, then drops them all with one DROP TABLE a, b, …: right on the night a
month is due, a syntax error ("DROP TABLE " with no name) on every night nothing is due and on
every retry, so the nightly retention job fails 29 nights out of 30."""
CHECK = "partitioning.q4"
EXPECT = "Run again with the same cutoff"
EDIT = {"drop_months_before": [(
    '''            conn.execute(f"ALTER TABLE orders DETACH PARTITION {part.name}")
            conn.execute(f"DROP TABLE {part.name}")
''', '''            conn.execute(f"ALTER TABLE orders DETACH PARTITION {part.name}")
    with conn.transaction():
        conn.execute("DROP TABLE " + ", ".join(p.name for p in old))
''')]}
