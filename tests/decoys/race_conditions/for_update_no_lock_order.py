"""SELECT … FOR UPDATE in argument order (src, then dst) and no retry: opposite
transfers lock the two rows in opposite orders and one dies with 40P01."""
CHECK = "race_conditions.q2"
EXPECT = '40P01'  # the verdict must give this reason
REPLACE = {"transfer": '''import uuid

def transfer(conn, src, dst, amount, request_id):
    """Locks src, then dst (argument order, not a global order), and never retries."""
    (balance,) = conn.execute("SELECT balance FROM accounts WHERE id = %s FOR UPDATE", (src,)).fetchone()
    conn.execute("SELECT balance FROM accounts WHERE id = %s FOR UPDATE", (dst,)).fetchone()
    if balance < amount:
        conn.rollback()
        return None
    conn.execute("UPDATE accounts SET balance = balance - %s WHERE id = %s", (amount, src))
    conn.execute("UPDATE accounts SET balance = balance + %s WHERE id = %s", (amount, dst))
    (transfer_id,) = conn.execute(
        "INSERT INTO transfers (request_id, src, dst, amount) VALUES (%s, %s, %s, %s) RETURNING id",
        (request_id, src, dst, amount)).fetchone()
    conn.commit()
    return transfer_id
'''}
