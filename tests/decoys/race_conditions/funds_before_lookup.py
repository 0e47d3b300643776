"""Debits first (the conditional UPDATE is the funds check) and recognises a resend only at the
ledger insert (ON CONFLICT DO NOTHING, then roll back and look the id up). Idempotent while the
account still covers the amount; but a resend of a transfer that emptied the account (or left
less than its amount) meets 'insufficient funds' before its own ledger row, and answers None
for a payment that went through: the customer is told it failed and pays again."""
CHECK = "race_conditions.q3"
# which of the two resends the seeded order of the scenarios reaches first
EXPECT = ("ran the funds check before it looked the request id up", "it ran as a new payment")
REPLACE = {"transfer": '''import random, time, uuid
import psycopg

def transfer(conn, src, dst, amount, request_id):
    for attempt in range(1, 9):
        try:
            conn.execute("SELECT id FROM accounts WHERE id IN (%s, %s) ORDER BY id FOR UPDATE",
                         (src, dst)).fetchall()
            debited = conn.execute(
                "UPDATE accounts SET balance = balance - %s WHERE id = %s AND balance >= %s",
                (amount, src, amount)).rowcount
            if debited == 0:
                conn.rollback()
                return None
            conn.execute("UPDATE accounts SET balance = balance + %s WHERE id = %s", (amount, dst))
            row = conn.execute(
                "INSERT INTO transfers (request_id, src, dst, amount) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (request_id) DO NOTHING RETURNING id",
                (request_id, src, dst, amount)).fetchone()
            if row is None:  # a resend: undo, answer with the original
                conn.rollback()
                (tid,) = conn.execute("SELECT id FROM transfers WHERE request_id = %s",
                                      (request_id,)).fetchone()
                conn.rollback()
                return tid
            conn.commit()
            return row[0]
        except psycopg.Error as exc:
            if exc.sqlstate in ("40001", "40P01"):
                conn.rollback()
                time.sleep(random.uniform(0, min(0.1, 0.002 * 2 ** attempt)))
                continue
            raise
    raise RuntimeError("gave up")
'''}
