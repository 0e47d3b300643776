"""Returns None for insufficient funds without ending its transaction: the connection is
left INTRANS holding the FOR UPDATE row locks, and the next transfer on either account
waits behind a pooled connection nobody is using."""
CHECK = "race_conditions.q1"
EXPECT = 'transaction still open'  # the verdict must give this reason
EDIT = {"transfer": [("""            if debited == 0:  # insufficient funds: change nothing
                conn.rollback()
                return None""", """            if debited == 0:  # insufficient funds
                return None""")]}
