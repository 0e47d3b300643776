"""Recognises a resent request as 'a transfer like this one' (the newest with the same src, dst
and amount) instead of by its request id: a customer paying the same bill twice gets the first
transfer's id back for the second payment, which never happens."""
CHECK = "race_conditions.q3"
EXPECT = "earlier transfer with the same src"
EDIT = {"transfer": [("""            done = conn.execute("SELECT id FROM transfers WHERE request_id = %s",
                                (request_id,)).fetchone()""", """            done = conn.execute("SELECT id FROM transfers WHERE src = %s AND dst = %s "
                                "AND amount = %s ORDER BY id DESC LIMIT 1",
                                (src, dst, amount)).fetchone()""")]}
