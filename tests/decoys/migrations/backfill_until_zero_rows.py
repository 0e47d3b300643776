"""The blog-post backfill: UPDATE the next batch_size NULL users (rescanned from the start of the table every
batch) until an UPDATE changes 0 rows. A batch made only of users without a sign-up event (more of them in a row
than batch_size: imported accounts) changes 0 rows and ends the backfill early; each batch re-reads every row done."""
CHECK = "migrations.q2"
EXPECT = "run of users with no sign-up event"
REPLACE = {"backfill": '''def backfill(conn, batch_size=10_000, pause=0.01, job="users.created_at"):
    while True:
        with conn.transaction():
            n = conn.execute("""UPDATE users u SET created_at = s.signed_up_at
                                FROM signup_events s
                                WHERE s.user_id = u.id AND u.id IN (
                                    SELECT id FROM users WHERE created_at IS NULL
                                    ORDER BY id LIMIT %s)""", [batch_size]).rowcount
        if n == 0:
            break
        time.sleep(pause)
'''}
