"""REPEATABLE READ with retries and an idempotency key, set with conn.isolation_level and
never put back: every later transaction of the caller's pooled connection runs at
REPEATABLE READ and can fail with 40001 in code that has no retry. (Setting
conn.autocommit = True and leaving it fails for the same reason.)"""
CHECK = "race_conditions.q1"
EXPECT = "connection's own state"
REPLACE = {"transfer": '''import random, time, uuid
import psycopg

def transfer(conn, src, dst, amount, request_id):
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    for attempt in range(1, 30):
        try:
            (balance,) = conn.execute("SELECT balance FROM accounts WHERE id = %s", (src,)).fetchone()
            if balance < amount:
                conn.rollback()
                return None
            for account, delta in sorted({src: -amount, dst: amount}.items()):
                conn.execute("UPDATE accounts SET balance = balance + %s WHERE id = %s", (delta, account))
            (transfer_id,) = conn.execute(
                "INSERT INTO transfers (request_id, src, dst, amount) VALUES (%s, %s, %s, %s) "
                "RETURNING id", (request_id, src, dst, amount)).fetchone()
            conn.commit()
            return transfer_id
        except psycopg.Error as exc:
            conn.rollback()
            if exc.sqlstate in ("40001", "40P01"):
                time.sleep(random.uniform(0, min(0.1, 0.002 * 2 ** attempt)))
                continue
            if isinstance(exc, psycopg.OperationalError):
                row = conn.execute("SELECT id FROM transfers WHERE request_id = %s",
                                   (request_id,)).fetchone()
                conn.rollback()
                if row:
                    return row[0]
                continue
            raise
    raise RuntimeError("gave up")
'''}
