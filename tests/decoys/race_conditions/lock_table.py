"""Fixes the race with LOCK TABLE accounts IN SHARE ROW EXCLUSIVE MODE, then the naive
read-modify-write: the money is right, but every transfer and every other writer of
accounts (any account) queues behind each transfer."""
CHECK = "race_conditions.q1"
EXPECT = "had to wait for it"
REPLACE = {"transfer": '''import random, time, uuid
import psycopg

def transfer(conn, src, dst, amount, request_id):
    for attempt in range(1, 9):
        try:
            conn.execute("LOCK TABLE accounts IN SHARE ROW EXCLUSIVE MODE")
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
