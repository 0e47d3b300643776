"""Copies the instant through a local timestamp (signed_up_at::timestamp): wrong by an hour
for every sign-up in the session zone's DST fall-back hour."""
CHECK = "migrations.q2"
EXPECT = "hour that repeats when clocks go back"  # the verdict must give this reason
EDIT = {"backfill": [
    ("UPDATE users u SET created_at = s.signed_up_at\n",
     "UPDATE users u SET created_at = s.signed_up_at::timestamp\n"),
]}
