"""Treats a deleted_at still ahead as 'still active' (a scheduled deletion): a customer whose
deleted_at is set is soft-deleted, whatever the date."""
CHECK = "start_here.q1"
EXPECT = "soft-deleted"  # the verdict must give this reason
EDIT = {"newest_sql": [("WHERE deleted_at IS NULL", "WHERE deleted_at IS NULL OR deleted_at > now()")]}
