"""Batches of batch_size, with a pause, but looped inside one DO block: a DO block is one
transaction, so every row locked by an early batch stays locked until the last batch is done."""
CHECK = "migrations.q2"
EXPECT = "in one transaction"  # the verdict must give this reason
REPLACE = {"backfill": '''from tqdm import tqdm


def backfill(conn, batch_size=10_000, pause=0.01):
    # one round trip: the server loops over the batches itself
    conn.execute(f"""
        DO $$
        DECLARE last_id bigint := 0; hi bigint;
        BEGIN
          LOOP
            SELECT max(id) INTO hi FROM (SELECT id FROM users WHERE id > last_id
                                         ORDER BY id LIMIT {int(batch_size)}) b;
            EXIT WHEN hi IS NULL;
            UPDATE users u SET created_at = s.signed_up_at FROM signup_events s
             WHERE s.user_id = u.id AND u.id > last_id AND u.id <= hi AND u.created_at IS NULL;
            last_id := hi;
            PERFORM pg_sleep({float(pause)});
          END LOOP;
        END $$""")
    conn.execute("CREATE TABLE IF NOT EXISTS backfill_log (at timestamptz)")
    conn.execute("INSERT INTO backfill_log VALUES (now())")
'''}
