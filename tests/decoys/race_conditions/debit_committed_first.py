"""Commits the debit in a transaction of its own ("the money is safe now"), then credits dst and
writes the ledger row in a second one. Every invariant holds once both have committed, but in
between the money is nowhere: a crash, a killed worker or a lost connection there loses it for
good, and every report or reconciliation that runs meanwhile sees it missing."""
CHECK = "race_conditions.q1"
EXPECT = "part of the transfer was committed without the rest"
EDIT = {"transfer": [("""            debited = conn.execute(
                "UPDATE accounts SET balance = balance - %s, version = version + 1, updated_at = now() "
                "WHERE id = %s AND balance >= %s", (amount, src, amount)).rowcount
            if debited == 0:  # insufficient funds: change nothing
                conn.rollback()
                return None
""", """            debited = conn.execute(
                "UPDATE accounts SET balance = balance - %s, version = version + 1, updated_at = now() "
                "WHERE id = %s AND balance >= %s", (amount, src, amount)).rowcount
            if debited == 0:  # insufficient funds: change nothing
                conn.rollback()
                return None
            conn.commit()  # the debit is safe now; credit and ledger next
            conn.execute("SELECT id FROM accounts WHERE id = %s FOR UPDATE", (dst,))
""")]}
