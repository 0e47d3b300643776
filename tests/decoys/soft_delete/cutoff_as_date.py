"""Compares dates, not instants (created_at::date < cutoff::date, both in the session's TimeZone):
orders from the cutoff's local midnight up to the cutoff stay, and which ones depends on the zone."""
CHECK = "soft_delete.q3"
EXPECT = "created before the cutoff"  # the verdict must give this reason
EDIT = {"archive_orders": [("created_at < %(cutoff)s", "created_at::date < %(cutoff)s::date")]}
