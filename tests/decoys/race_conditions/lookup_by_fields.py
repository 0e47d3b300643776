"""After an ambiguous COMMIT failure, looks for 'a transfer like this one' (the newest with the
same src, dst and amount) instead of its own request id: an earlier identical transfer (a
customer paying the same bill twice) is taken as proof that this one committed."""
CHECK = "race_conditions.q3"
EXPECT = "earlier transfer with the same src"
EDIT = {"transfer": [("""                row = conn.execute("SELECT id FROM transfers WHERE request_id = %s",
                                   (request_id,)).fetchone()""", """                row = conn.execute("SELECT id FROM transfers WHERE src = %s AND dst = %s "
                                   "AND amount = %s ORDER BY id DESC LIMIT 1",
                                   (src, dst, amount)).fetchone()""")]}
