"""Leaves load-test customers out on both sides: their duplicates are customers too, and their
rows hold their emails in the unique index."""
CHECK = "start_here.q2"
EXPECT = "load-test customers"  # the verdict must give this reason
EDIT = {"collisions_sql": [("WHERE EXISTS (", "WHERE NOT c.is_load_test AND EXISTS ("),
                           ("AND other.id <> c.id", "AND other.id <> c.id AND NOT other.is_load_test")]}
