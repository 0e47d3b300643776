"""The idempotency key is made inside transfer (uuid4 per call, the caller's request_id ignored),
and an ambiguous COMMIT is looked up on the same, dead, connection: every call is a new request,
so a client that resends a payment after a timeout or a lost COMMIT reply pays twice."""
CHECK = "race_conditions.q3"
EXPECT = "applied twice"
REPLACE = {"transfer": '''import random, time, uuid
import psycopg

def transfer(conn, src, dst, amount, request_id):
    request_id = uuid.uuid4()  # one id per transfer, shared by every attempt
    for attempt in range(1, 9):
        try:
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
        except psycopg.Error as exc:
            if exc.sqlstate in ("40001", "40P01"):
                conn.rollback()
                time.sleep(random.uniform(0, min(0.1, 0.002 * 2 ** attempt)))
                continue
            if isinstance(exc, psycopg.OperationalError):
                # the COMMIT's reply may be lost: did it commit? The ledger knows.
                conn.rollback()
                row = conn.execute("SELECT id FROM transfers WHERE request_id = %s",
                                   (request_id,)).fetchone()
                conn.rollback()
                if row:
                    return row[0]
                continue
            raise
    raise RuntimeError(f"transfer {src} -> {dst} gave up after 8 attempts")
'''}
