"""Retries any error, including the OperationalError of a lost COMMIT ack, with a fresh
request id per attempt instead of the caller's: a transfer that had committed is applied a
second time (and so is every request the client sends again)."""
CHECK = "race_conditions.q3"
EXPECT = 'applied twice'  # the verdict must give this reason
REPLACE = {"transfer": '''import random, time, uuid
import psycopg

def transfer(conn, src, dst, amount, request_id):
    """Ordered locks and retries, but retries *any* error, including one raised after COMMIT."""
    for attempt in range(1, 9):
        try:
            conn.execute("SELECT id FROM accounts WHERE id IN (%s, %s) ORDER BY id FOR UPDATE",
                         (src, dst)).fetchall()
            if conn.execute("UPDATE accounts SET balance = balance - %s WHERE id = %s AND balance >= %s",
                            (amount, src, amount)).rowcount == 0:
                conn.rollback()
                return None
            conn.execute("UPDATE accounts SET balance = balance + %s WHERE id = %s", (amount, dst))
            (transfer_id,) = conn.execute(
                "INSERT INTO transfers (request_id, src, dst, amount) VALUES (%s, %s, %s, %s) "
                "RETURNING id", (uuid.uuid4(), src, dst, amount)).fetchone()
            conn.commit()
            return transfer_id
        except psycopg.Error:
            conn.rollback()
            time.sleep(random.uniform(0, 0.002 * 2 ** attempt))
    raise RuntimeError("gave up")
'''}
