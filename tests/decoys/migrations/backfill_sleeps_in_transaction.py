"""Sleeps pause *inside* each batch's transaction: every batch's row locks are held through
the pause, so the throttle lengthens the application's waits instead of freeing them."""
CHECK = "migrations.q2"
EXPECT = "with no transaction open"  # the verdict must give this reason
EDIT = {"backfill": [
    ("""                             [hi, n, job])
            bar.update(n)""",
     """                             [hi, n, job])
                time.sleep(pause)  # throttle
            bar.update(n)"""),
    ("            time.sleep(pause)  # throttle: let vacuum, replicas and the application breathe\n", ""),
]}
