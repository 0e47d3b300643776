"""Runs count // batch_size full batches: the last, partial batch is never run, so some users
keep created_at NULL whenever the row count is not a multiple of the batch size."""
CHECK = "migrations.q2"
EXPECT = "last batch is partial"  # the verdict must give this reason
REPLACE = {"backfill": '''from tqdm import tqdm


def backfill(conn, batch_size=10_000, pause=0.01):
    todo = conn.execute("SELECT count(*) FROM users WHERE created_at IS NULL").fetchone()[0]
    for _ in tqdm(range(todo // batch_size), desc="backfill"):
        with conn.transaction():
            conn.execute("""UPDATE users u SET created_at = s.signed_up_at FROM signup_events s
                            WHERE s.user_id = u.id AND u.id IN (
                                SELECT id FROM users WHERE created_at IS NULL
                                ORDER BY id LIMIT %s)""", [batch_size])
        time.sleep(pause)
'''}
