"""Writes the two balances in id order, with the conditional UPDATE as the funds check, and ends
the refused transfer with COMMIT ("nothing changed anyway") instead of ROLLBACK. When dst has
the lower id its credit ran first, so a refused transfer commits the credit without the debit:
money from nothing, on exactly the transfers that were declined."""
CHECK = "race_conditions.q1"
EXPECT = "yet it changed balances"
REPLACE = {"transfer": '''import random, time, uuid
import psycopg

def transfer(conn, src, dst, amount, request_id):
    for attempt in range(1, 9):
        try:
            conn.execute("SELECT id FROM accounts WHERE id IN (%s, %s) ORDER BY id FOR UPDATE",
                         (src, dst)).fetchall()
            done = conn.execute("SELECT id FROM transfers WHERE request_id = %s",
                                (request_id,)).fetchone()
            if done:
                conn.rollback()
                return done[0]
            for account in sorted((src, dst)):  # id order, like the locks
                if account == dst:
                    conn.execute("UPDATE accounts SET balance = balance + %s WHERE id = %s",
                                 (amount, dst))
                elif conn.execute("UPDATE accounts SET balance = balance - %s "
                                  "WHERE id = %s AND balance >= %s",
                                  (amount, src, amount)).rowcount == 0:
                    conn.commit()  # insufficient funds: end the transaction
                    return None
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
            raise
    raise RuntimeError(f"transfer {src} -> {dst} gave up after 8 attempts")
'''}
