"""Exponential backoff with no cap: attempt 20 sleeps 14 hours, attempt 30 for years."""
CHECK = "migrations.q1"
EXPECT = "backoff has no cap"  # the verdict must give this reason
EDIT = {"run_ddl": [
    ("                time.sleep(random.uniform(0, min(2.0, 0.05 * 2 ** attempt)))",
     "                time.sleep(0.05 * 2 ** attempt + random.uniform(0, 0.05))"),
]}
