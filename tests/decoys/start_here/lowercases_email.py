"""Normalises the address in the output: lower(email) is not the stored email (mixed-case
addresses come back altered)."""
CHECK = "start_here.q1"
EXPECT = "return email as stored"  # the verdict must give this reason
EDIT = {"newest_sql": [("SELECT id, email, created_at", "SELECT id, lower(email) AS email, created_at")]}
