"""On an OperationalError from COMMIT it assumes the commit went through and returns the id
from RETURNING: when the connection broke before the COMMIT reached the server, nothing
committed, and it reports a transfer that never happened (the payment is lost)."""
CHECK = "race_conditions.q3"
EXPECT = "never committed"
EDIT = {"transfer": [("""            if isinstance(exc, psycopg.OperationalError):
                # The COMMIT's reply may be lost: did it commit? The ledger knows.
                # (With a really dropped connection, ask on a new one.)
                conn.rollback()
                row = conn.execute("SELECT id FROM transfers WHERE request_id = %s",
                                   (request_id,)).fetchone()
                conn.rollback()
                if row:
                    return row[0]
                continue""", """            if isinstance(exc, psycopg.OperationalError) and transfer_id is not None:
                # the commit was sent: the transfer went through, only the reply got lost
                conn.rollback()
                return transfer_id"""),
    ("""    for attempt in range(1, 9):
        try:""", """    for attempt in range(1, 9):
        transfer_id = None
        try:""")]}
