"""Compares addresses with ILIKE: `_` and `%` in an address are wildcards, so distinct addresses match."""
CHECK = "start_here.q2"
EXPECT = 'wildcard'  # the verdict must give this reason
EDIT = {"collisions_sql": [("lower(other.email) = lower(c.email)", "other.email ILIKE c.email")]}
