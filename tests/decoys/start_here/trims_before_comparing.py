"""Compares lower(trim(email)) "to clean the data": 'ann@x.org ' and 'ann@x.org' are counted
as a collision, though the unique index on lower(email) accepts both (and no mail server
treats them as one address unless trimmed on input): not "equal once case is ignored"."""
CHECK = "start_here.q2"
EXPECT = "the right count is"
EDIT = {"collisions_sql": [("lower(other.email) = lower(c.email)",
                            "lower(trim(other.email)) = lower(trim(c.email))")]}
