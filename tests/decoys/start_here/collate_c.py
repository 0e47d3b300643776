"""lower(email COLLATE "C") "to compare bytes, like the index": in the C collation lower()
folds only ASCII letters, so 'JOSÉ@x' and 'josé@x', 'ÅSA@x' and 'åsa@x' are not counted,
though a unique index on lower(email) (database collation C.UTF-8) rejects them."""
CHECK = "start_here.q2"
EXPECT = "the right count is"
EDIT = {"collisions_sql": [("lower(other.email) = lower(c.email)",
                            'lower(other.email COLLATE "C") = lower(c.email COLLATE "C")')]}
