"""Read-modify-write at READ COMMITTED: reads the balance into Python and writes back
balance_read - amount, overwriting any debit that committed in between (a lost update)."""
CHECK = "race_conditions.q1"
EXPECT = 'lost update'  # the verdict must give this reason
REPLACE = {"transfer": '''import uuid

def transfer(conn, src, dst, amount, request_id):
    """Read-modify-write: reads the balances, computes in Python, writes them back."""
    (src_balance,) = conn.execute("SELECT balance FROM accounts WHERE id = %s", (src,)).fetchone()
    if src_balance < amount:
        conn.rollback()
        return None
    (dst_balance,) = conn.execute("SELECT balance FROM accounts WHERE id = %s", (dst,)).fetchone()
    conn.execute("UPDATE accounts SET balance = %s WHERE id = %s", (src_balance - amount, src))
    conn.execute("UPDATE accounts SET balance = %s WHERE id = %s", (dst_balance + amount, dst))
    (transfer_id,) = conn.execute(
        "INSERT INTO transfers (request_id, src, dst, amount) VALUES (%s, %s, %s, %s) RETURNING id",
        (request_id, src, dst, amount)).fetchone()
    conn.commit()
    return transfer_id
'''}
