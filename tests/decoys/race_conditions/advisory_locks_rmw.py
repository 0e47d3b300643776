"""Serialises transfers with transaction-level advisory locks on the two account ids (in id
order), then reads the balances and writes back values computed in Python. Transfers exclude
each other, but any other writer of accounts (a deposit, interest, a refund job, an admin
UPDATE) takes no advisory lock: its update is overwritten, a lost update."""
CHECK = "race_conditions.q1"
EXPECT = "deposit was lost"
REPLACE = {"transfer": '''import random, time, uuid
import psycopg

def transfer(conn, src, dst, amount, request_id):
    for attempt in range(1, 9):
        try:
            for account in sorted((src, dst)):
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (account,))
            balances = dict(conn.execute("SELECT id, balance FROM accounts WHERE id IN (%s, %s)",
                                         (src, dst)).fetchall())
            if balances[src] < amount:
                conn.rollback()
                return None
            conn.execute("UPDATE accounts SET balance = %s WHERE id = %s", (balances[src] - amount, src))
            conn.execute("UPDATE accounts SET balance = %s WHERE id = %s", (balances[dst] + amount, dst))
            (transfer_id,) = conn.execute(
                "INSERT INTO transfers (request_id, src, dst, amount) VALUES (%s, %s, %s, %s) "
                "RETURNING id", (request_id, src, dst, amount)).fetchone()
            conn.commit()
            return transfer_id
        except psycopg.Error as exc:
            if exc.sqlstate in ("40001", "40P01"):
                conn.rollback()
                time.sleep(random.uniform(0, min(0.1, 0.002 * 2 ** attempt)))
                continue
            if isinstance(exc, psycopg.OperationalError):
                conn.rollback()
                row = conn.execute("SELECT id FROM transfers WHERE request_id = %s",
                                   (request_id,)).fetchone()
                conn.rollback()
                if row:
                    return row[0]
                continue
            raise
    raise RuntimeError("gave up")
'''}
