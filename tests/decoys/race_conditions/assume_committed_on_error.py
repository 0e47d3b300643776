"""On an OperationalError from COMMIT it assumes the commit went through and returns the id
from RETURNING: when the connection broke before the COMMIT reached the server, nothing
committed, and it reports a transfer that never happened (the payment is lost)."""
CHECK = "race_conditions.q3"
EXPECT = "never committed"
EDIT = {"transfer": [("""            # Anything else, above all an OperationalError on COMMIT (did it commit? the
            # connection is gone, we cannot ask on it), goes to the caller, who sends the
            # same request_id again on a new connection: the lookup above answers it.
            raise""", """            if isinstance(exc, psycopg.OperationalError) and transfer_id is not None:
                return transfer_id  # the commit was sent: only the reply got lost
            raise"""),
    ("""    for attempt in range(1, 9):
        try:""", """    for attempt in range(1, 9):
        transfer_id = None
        try:""")]}
