"""Serialises feed loads with LOCK TABLE products IN EXCLUSIVE MODE "to avoid deadlocks":
every order, stock update and price change waits for the whole batch."""
CHECK = "upserts.q3"
EXPECT = "had to wait for it"
EDIT = {"load_feed": [("""        with cur.copy("COPY feed_batch FROM STDIN") as copy:""",
                       """        cur.execute("LOCK TABLE products IN EXCLUSIVE MODE")  # one loader at a time
        with cur.copy("COPY feed_batch FROM STDIN") as copy:""")]}
