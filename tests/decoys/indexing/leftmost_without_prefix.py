"""Believes any query naming an indexed column can use the composite index (C, E included)."""
CHECK = "indexing.q2"
EXPECT = 'no leftmost prefix'  # the verdict must give this reason
REPLACE = {"usable": '''usable = {"A", "B", "C", "D", "E", "F"}'''}
