"""Overrides the caller's lock_timeout with a longer one of its own (SET LOCAL lock_timeout =
'10s'): the caller's budget (a few hundred ms for an API request) is ignored, and the request
waits 10 s behind a row lock another transaction holds."""
CHECK = "soft_delete.q2"
EXPECT = "lock_timeout is its budget"  # the verdict must give this reason
EDIT = {"restore_product": [("    try:\n        restored",
                             "    conn.execute(\"SET LOCAL lock_timeout = '10s'\")\n    try:\n        restored")]}
