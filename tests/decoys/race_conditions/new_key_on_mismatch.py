"""A request id already in the ledger with OTHER fields (a client that reused a key for another
payment) is treated as a new payment under a fresh uuid4 made inside transfer. Every resend of
that second payment (same key, same fields) again meets the first payment's row, mints another
key and runs again: the retry loop of the client double-spends. The contract says a known
request_id changes nothing (return its id, or refuse it); never mint keys inside transfer."""
CHECK = "race_conditions.q3"
EXPECT = "it ran as a new payment"
EDIT = {"transfer": [
    ('''            done = conn.execute("SELECT id FROM transfers WHERE request_id = %s",
                                (request_id,)).fetchone()
            if done:
                conn.rollback()
                return done[0]''',
     '''            done = conn.execute("SELECT id, src, dst, amount FROM transfers WHERE request_id = %s",
                                (request_id,)).fetchone()
            if done and (done[1], done[2], done[3]) == (src, dst, amount):
                conn.rollback()
                return done[0]
            if done:  # the key was used for another payment: this one needs a key of its own
                request_id = uuid.uuid4()'''),
]}
