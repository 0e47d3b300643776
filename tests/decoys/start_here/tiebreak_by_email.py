"""Breaks created_at ties by email instead of id (desc): tied sign-ups come out in the wrong order."""
CHECK = "start_here.q1"
EXPECT = 'not broken by id'  # the verdict must give this reason
EDIT = {"newest_sql": [("ORDER BY created_at DESC, id DESC", "ORDER BY created_at DESC, email")]}
