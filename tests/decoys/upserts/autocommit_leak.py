"""Puts the caller's connection in autocommit ("one statement, no transaction needed")
and leaves it there: the caller's next transaction is no transaction at all."""
CHECK = "upserts.q1"
EXPECT = "conn.autocommit"
EDIT = {"upsert_product": [("""    row = conn.execute(\"\"\"
        INSERT INTO products AS p""", """    conn.autocommit = True  # a single statement: no transaction to manage
    row = conn.execute(\"\"\"
        INSERT INTO products AS p""")]}
