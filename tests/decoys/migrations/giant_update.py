"""Backfills in one giant UPDATE: every row locked until it commits, all lost on a crash."""
CHECK = "migrations.q2"
EXPECT = 'in one transaction'  # the verdict must give this reason
REPLACE = {"backfill": '''from tqdm import tqdm


def backfill(conn, batch_size=10_000, pause=0.01):
    conn.execute("""UPDATE users u SET created_at = s.signed_up_at FROM signup_events s
                    WHERE s.user_id = u.id AND u.created_at IS NULL""")
'''}
