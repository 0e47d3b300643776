"""Compares only the part before the @: ann@one.org and ANN@two.org are two mailboxes."""
CHECK = "start_here.q2"
EXPECT = "only the part before the @"  # the verdict must give this reason
EDIT = {"collisions_sql": [("lower(other.email) = lower(c.email)",
                            "lower(split_part(other.email, '@', 1)) = lower(split_part(c.email, '@', 1))")]}
