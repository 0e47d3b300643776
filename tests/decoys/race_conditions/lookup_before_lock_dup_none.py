"""Looks the request id up BEFORE locking the rows, and treats a UniqueViolation on the ledger
insert as 'a concurrent copy of this request already did it': rolls back and returns None.
A resend that races the original (the client timed out while the original still ran) is told
'insufficient funds' for a payment that went through: the customer is told it failed and pays
again under a new key (a double payment)."""
CHECK = "race_conditions.q3"
EXPECT = "returned None, but the transfer had committed"
REPLACE = {"transfer": '''import random, time, uuid
import psycopg

def transfer(conn, src, dst, amount, request_id):
    for attempt in range(1, 9):
        try:
            # idempotency first: a request already in the ledger is answered at once
            done = conn.execute("SELECT id FROM transfers WHERE request_id = %s",
                                (request_id,)).fetchone()
            if done:
                conn.rollback()
                return done[0]
            conn.execute("SELECT id FROM accounts WHERE id IN (%s, %s) ORDER BY id FOR UPDATE",
                         (src, dst)).fetchall()
            debited = conn.execute(
                "UPDATE accounts SET balance = balance - %s, version = version + 1, updated_at = now() "
                "WHERE id = %s AND balance >= %s", (amount, src, amount)).rowcount
            if debited == 0:
                conn.rollback()
                return None
            conn.execute("UPDATE accounts SET balance = balance + %s, version = version + 1, "
                         "updated_at = now() WHERE id = %s", (amount, dst))
            (transfer_id,) = conn.execute(
                "INSERT INTO transfers (request_id, src, dst, amount) VALUES (%s, %s, %s, %s) "
                "RETURNING id", (request_id, src, dst, amount)).fetchone()
            conn.commit()
            return transfer_id
        except psycopg.errors.UniqueViolation:
            conn.rollback()  # a duplicate of this request got there first: nothing to do
            return None
        except psycopg.Error as exc:
            if exc.sqlstate in ("40001", "40P01"):
                conn.rollback()
                time.sleep(random.uniform(0, min(0.1, 0.002 * 2 ** attempt)))
                continue
            raise
    raise RuntimeError(f"transfer {src} -> {dst} gave up after 8 attempts")
'''}
