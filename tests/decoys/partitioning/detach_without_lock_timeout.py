"""Detaches with no lock_timeout: behind a long report, the DETACH waits for its ACCESS EXCLUSIVE
lock and every order of the shop queues behind it for as long as the report runs."""
CHECK = "partitioning.q4"
EXPECT = "lock_timeout"
EDIT = {"drop_months_before": [("            conn.execute(\"SET LOCAL lock_timeout = '2s'\")\n", "")]}
