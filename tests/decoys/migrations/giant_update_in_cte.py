"""One giant UPDATE (wrapped in a CTE that counts the rows) and a log row: every user locked until
it commits. Counting rows by command tag saw only the log row; the locks tell."""
CHECK = "migrations.q2"
EXPECT = "in one transaction"  # the verdict must give this reason
REPLACE = {"backfill": '''from tqdm import tqdm


def backfill(conn, batch_size=10_000, pause=0.01):
    with conn.transaction():
        conn.execute("CREATE TABLE IF NOT EXISTS backfill_log (at timestamptz, rows bigint)")
        done = conn.execute("""
            WITH done AS (
                UPDATE users u SET created_at = s.signed_up_at FROM signup_events s
                WHERE s.user_id = u.id AND u.created_at IS NULL
                RETURNING 1)
            SELECT count(*) FROM done""").fetchone()[0]
        conn.execute("INSERT INTO backfill_log VALUES (now(), %s)", [done])
'''}
