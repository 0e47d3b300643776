"""SERIALIZABLE is correct only with retries: this one lets
`could not serialize access due to concurrent update` (40001) escape."""
CHECK = "race_conditions.q1"
EXPECT = '40001'  # the verdict must give this reason
REPLACE = {"transfer": '''import uuid

def transfer(conn, src, dst, amount, request_id):
    """SERIALIZABLE read-modify-write, but a serialization failure is not retried."""
    conn.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
    (src_balance,) = conn.execute("SELECT balance FROM accounts WHERE id = %s", (src,)).fetchone()
    if src_balance < amount:
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
