"""Archives created_at <= cutoff: the order placed at the cutoff instant itself leaves the live
table, though the rule keeps everything from the cutoff on."""
CHECK = "soft_delete.q3"
EXPECT = "created at or after the cutoff"  # the verdict must give this reason
EDIT = {"archive_orders": [("created_at < %(cutoff)s", "created_at <= %(cutoff)s")]}
