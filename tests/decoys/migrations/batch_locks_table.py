"""Each batch first locks the table "so nobody changes the batch under it": SHARE ROW EXCLUSIVE
stops every INSERT, UPDATE and DELETE of the application, batch after batch."""
CHECK = "migrations.q2"
EXPECT = "locks the whole users table"  # the verdict must give this reason
EDIT = {"backfill": [
    ("""            with conn.transaction():
                # keyset pagination""",
     """            with conn.transaction():
                conn.execute("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
                # keyset pagination"""),
]}
